/**
 * The admin API: how the CLI talks to a running node (`headstart status`, `snapshot`,
 * `promote`, `demote`). HTTP on loopback only, JSON, and a token the node writes into its
 * data directory (mode 0600) at start, so only someone who can read that directory can
 * change roles. Errors come back with their stable code, message and hint.
 */
import { randomBytes, timingSafeEqual } from 'node:crypto';
import { readFile, writeFile } from 'node:fs/promises';
import { createServer, request, type IncomingMessage, type Server } from 'node:http';
import { isAbsolute, join } from 'node:path';
import { HeadstartError, isHeadstartError, type ErrorCode } from '@headstart/errors';
import type { HeadstartNode } from './node';
import type { NodeConfig } from './config';

const TOKEN_FILE = 'admin.token';

export async function startAdminServer(node: HeadstartNode, config: NodeConfig): Promise<{ server: Server; port: number }> {
  const { host, port } = config.listen.admin;
  if (!['127.0.0.1', '::1', 'localhost'].includes(host)) {
    throw new HeadstartError('CONFIG_INVALID', `listen.admin must be a loopback address (it can promote volumes), not ${host}`);
  }
  const token = randomBytes(24).toString('hex');
  await writeFile(join(config.node.dataDir, TOKEN_FILE), token + '\n', { mode: 0o600 });
  const expected = Buffer.from(`Bearer ${token}`);
  const server = createServer((req, res) => {
    const send = (status: number, body: unknown) => res.writeHead(status, { 'content-type': 'application/json' }).end(JSON.stringify(body));
    const given = Buffer.from(req.headers.authorization ?? '');
    if (given.length !== expected.length || !timingSafeEqual(given, expected)) return send(401, { code: 'NODE_ADMIN_DENIED', message: 'bad or missing admin token' });
    // A caller that goes away (Ctrl-C, kill) before the answer calls off what it waited for:
    // a verification's hold of the schedule, a wait for acknowledgement.
    const gone = new AbortController();
    res.on('close', () => {
      if (!res.writableFinished) gone.abort(new HeadstartError('VERIFY_ENDED', 'the caller went away before the answer'));
    });
    void handle(node, req, gone.signal).then(
      (body) => send(200, body),
      (err: unknown) => {
        const e = isHeadstartError(err) ? err : new HeadstartError('VOLUME_IO', String((err as Error)?.message ?? err));
        send(e.code === 'NODE_NO_SUCH_VOLUME' ? 404 : 409, { code: e.code, message: e.message, hint: e.hint, retryable: e.retryable });
      },
    );
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject); // named as listen.admin by the caller (listen.ts)
    server.listen(port, host, resolve);
  });
  const addr = server.address();
  return { server, port: typeof addr === 'object' && addr !== null ? addr.port : port };
}

async function handle(node: HeadstartNode, req: IncomingMessage, callerGone: AbortSignal): Promise<unknown> {
  const url = new URL(req.url ?? '/', 'http://admin');
  const m = /^\/v1\/volumes\/([^/]+)\/(snapshot|promote|demote|verify-begin|verify-renew|verify-end|export)$/.exec(url.pathname);
  if (req.method === 'GET' && url.pathname === '/v1/status') return node.status();
  if (req.method === 'POST' && url.pathname === '/v1/rate') {
    // rate=<bytes/s>|none|auto; peer=<name> for a peer's cap, absent for the node-wide linkCap
    const raw = url.searchParams.get('rate');
    const rate = raw === 'none' ? null : raw === 'auto' ? 'auto' : Number(raw);
    if (raw === null || (typeof rate === 'number' && !(Number.isFinite(rate) && rate > 0))) throw new HeadstartError('CONFIG_INVALID', `rate= must be a positive number of bytes/s, none or auto, not ${JSON.stringify(raw)}`);
    return node.setRateLimit(url.searchParams.get('peer'), rate);
  }
  if (req.method === 'POST' && m) {
    const name = decodeURIComponent(m[1]);
    if (m[2] === 'snapshot') {
      const point = await node.snapshotNow(name);
      // timeoutMs without progress: a backlog that moves is waited out, a stuck link is not.
      if (url.searchParams.get('wait') === '1') await node.waitAcked(name, point.n, Number(url.searchParams.get('timeoutMs') ?? 120_000), { whileProgressing: true, signal: callerGone });
      return point;
    }
    if (m[2] === 'promote') return node.promote(name, { force: url.searchParams.get('force') === '1', allowTorn: url.searchParams.get('allowTorn') === '1' });
    if (m[2] === 'verify-begin') return node.beginVerify(name, { signal: callerGone, sink: url.searchParams.get('sink') ?? undefined });
    if (m[2] === 'export') {
      const out = url.searchParams.get('out');
      if (out === null || !isAbsolute(out)) throw new HeadstartError('CONFIG_INVALID', 'export needs an absolute output path (out=)');
      const overwrite = url.searchParams.get('force') === '1';
      // group=1: out is a directory, one VOLUME.raw per volume of the group, at one point.
      return url.searchParams.get('group') === '1' ? node.exportGroup(name, out, { overwrite }) : node.exportImage(name, out, { overwrite });
    }
    if (m[2] === 'verify-renew') return node.renewVerify(name, heldPoint(url, m[2])!);
    // n=: only the verification holding that point (a comparison ending its own); none: whatever is held (verify --end).
    if (m[2] === 'verify-end') return node.endVerify(name, heldPoint(url, m[2], { optional: true })).then((ended) => ({ ended }));
    return node.demote(name);
  }
  throw new HeadstartError('NODE_NO_SUCH_VOLUME', `no admin endpoint ${req.method} ${url.pathname}`);
}

/** The point a verification holds, as its comparison names it (n=); undefined when absent and optional. */
function heldPoint(url: URL, endpoint: string, o: { optional?: boolean } = {}): number | undefined {
  const raw = url.searchParams.get('n');
  if (raw === null && o.optional === true) return undefined;
  const n = Number(raw);
  if (raw === null || !Number.isSafeInteger(n) || n < 0) throw new HeadstartError('CONFIG_INVALID', `${endpoint} takes the point the verification holds (n=), not ${JSON.stringify(raw)}`);
  return n;
}

/** The CLI's side: calls a running node's admin API. */
export async function callAdmin(config: NodeConfig, method: 'GET' | 'POST', path: string): Promise<unknown> {
  let token: string;
  try {
    token = (await readFile(join(config.node.dataDir, TOKEN_FILE), 'utf8')).trim();
  } catch {
    throw new HeadstartError('NODE_UNREACHABLE', `node ${config.node.name} is not running (no admin token in ${config.node.dataDir})`);
  }
  const { host, port } = config.listen.admin;
  return new Promise((resolve, reject) => {
    const req = request({ host, port, method, path, headers: { authorization: `Bearer ${token}` }, timeout: 300_000 }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => {
        let body: unknown;
        try {
          body = JSON.parse(Buffer.concat(chunks).toString('utf8'));
        } catch {
          return reject(new HeadstartError('NODE_UNREACHABLE', `node answered ${res.statusCode} with a body that is not JSON`));
        }
        if (res.statusCode === 200) return resolve(body);
        const b = body as { code?: string; message?: string };
        const code = (b.code ?? 'NODE_UNREACHABLE') as ErrorCode;
        reject(new HeadstartError(code, b.message ?? `node answered ${res.statusCode}`));
      });
    });
    req.on('error', (err) => reject(new HeadstartError('NODE_UNREACHABLE', `cannot reach node ${config.node.name} at ${host}:${port}: ${err.message}`, { cause: err })));
    req.end();
  });
}
