/**
 * Writing configuration: `init node`, `init volume`, `pair token|accept`. Edits go through
 * the YAML document model so an operator's comments and layout survive, and every result is
 * validated before it is written (a bad edit never reaches the file).
 */
import { execFile } from 'node:child_process';
import { X509Certificate, randomBytes } from 'node:crypto';
import { mkdir, readFile, writeFile, rename, rm } from 'node:fs/promises';
import { isIP } from 'node:net';
import { dirname, isAbsolute, join, relative, resolve } from 'node:path';
import { parseDocument, stringify, type Document } from 'yaml';
import { HeadstartError } from '@headstart/errors';
import { PEER_URL, validateConfig } from '@headstart/node';

async function loadDoc(path: string): Promise<Document> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (err) {
    throw new HeadstartError('CONFIG_INVALID', `cannot read ${path}: ${(err as Error).message} (create it with headstart init node NAME)`, { cause: err });
  }
  const doc = parseDocument(text);
  if (doc.errors.length > 0) throw new HeadstartError('CONFIG_INVALID', `${path} is not valid YAML: ${doc.errors[0].message}`);
  return doc;
}

/** Validates, then writes atomically (temp file + rename). */
async function saveDoc(path: string, doc: Document): Promise<void> {
  validateConfig(doc.toJS(), path, dirname(resolve(path)));
  const tmp = `${path}.tmp-${process.pid}`;
  await writeFile(tmp, doc.toString(), { mode: 0o600 });
  await rename(tmp, path);
}

/**
 * A self-signed certificate for the node's replication listener (ECDSA P-256, 10 years),
 * made with the system's openssl. Pairing hands it to the peer, which pins it; no CA needed.
 */
async function makeCertificate(dir: string, name: string, peersAddress: string): Promise<{ cert: string; key: string }> {
  const cert = `${name}.crt`;
  const key = `${name}.key`;
  const host = peersAddress.replace(/:\d+$/, '').replace(/^\[|\]$/g, '');
  const names = ['DNS:localhost', 'IP:127.0.0.1'];
  if (host !== '' && host !== '0.0.0.0' && host !== '::' && host !== 'localhost' && host !== '127.0.0.1') names.push(isIP(host) ? `IP:${host}` : `DNS:${host}`);
  const args = ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-days', '3650', '-subj', `/CN=${name}`, '-addext', `subjectAltName=${names.join(',')}`, '-keyout', join(dir, key), '-out', join(dir, cert)];
  await new Promise<void>((done, fail) =>
    execFile('openssl', args, (err, _out, stderr) => {
      if (!err) return done();
      const missing = (err as NodeJS.ErrnoException).code === 'ENOENT';
      fail(new HeadstartError('CONFIG_INVALID', missing ? 'openssl is not installed: install it (Debian: apt-get install openssl) to make the node\'s TLS certificate, or pass --no-tls' : `openssl could not make a certificate: ${stderr.trim() || err.message}`, { cause: err }));
    }),
  );
  return { cert: `./${cert}`, key: `./${key}` };
}

/** `data` (relative to the working directory) as the configuration in `configDir` names it. */
function dataDirFor(configDir: string, data: string): string {
  if (isAbsolute(data)) return data;
  const rel = relative(configDir, resolve(data));
  return rel.startsWith('..') ? resolve(data) : `./${rel}`;
}

export async function initNode(path: string, o: { name: string; data?: string; nbd: string; peers: string; dashboard: string; metrics: string; admin: string; tls: boolean }): Promise<void> {
  const exists = await readFile(path).then(
    () => true,
    () => false,
  );
  if (exists) throw new HeadstartError('CONFIG_INVALID', `${path} already exists; edit it or choose another --config`);
  const dir = dirname(resolve(path));
  // The configuration's paths are relative to its file; --data, like any path on a command
  // line, to where the command runs (`init node -c a/a.yaml --data a/data` meant a/a/data).
  const data = o.data === undefined ? './data' : dataDirFor(dir, o.data);
  const config = {
    node: { name: o.name, dataDir: data, secret: randomBytes(24).toString('hex') },
    listen: { nbd: o.nbd, peers: o.peers, dashboard: o.dashboard, metrics: o.metrics, admin: o.admin },
    peers: [],
    volumes: [],
  };
  validateConfig(config, path, dir);
  await mkdir(dir, { recursive: true });
  // TLS by default: the replication link crosses sites.
  const tls = o.tls ? await makeCertificate(dir, o.name, o.peers) : undefined;
  try {
    await writeFile(path, `# headstart node configuration (docs/configuration.md lists every key)\n${stringify(tls ? { ...config, tls } : config)}`, { mode: 0o600, flag: 'wx' });
  } catch (err) {
    if (tls) await Promise.all([rm(join(dir, tls.cert)), rm(join(dir, tls.key))]).catch(() => undefined);
    throw err;
  }
}

/** The archive block of the volumes of `group` already in the configuration, as written, if any. */
function groupArchive(doc: Document, group: string | undefined): { archive?: unknown } {
  if (group === undefined) return {};
  const volumes = (doc.toJS() as { volumes?: { group?: unknown; archive?: unknown }[] }).volumes ?? [];
  const member = volumes.find((x) => x.group === group && x.archive !== undefined);
  return member === undefined ? {} : { archive: member.archive };
}

export async function addVolume(path: string, v: { name: string; size: string; blockSize: number; role: string; every: string; sinks: string[]; group?: string; level?: boolean; rpoTarget?: string }): Promise<void> {
  const doc = await loadDoc(path);
  const volume = {
    name: v.name,
    size: v.size,
    blockSize: v.blockSize,
    role: v.role,
    schedule: { every: v.every, ...(v.level ? { level: true } : {}) },
    policy: { name: 'predictive' },
    ...(v.rpoTarget === undefined ? {} : { rpoTarget: v.rpoTarget }),
    sinks: v.sinks,
    ...(v.group === undefined ? {} : { group: v.group }),
    // A group's volumes are archived together (the configuration requires the same block):
    // a volume joining a group whose volumes are archived takes their archive block.
    ...groupArchive(doc, v.group),
  };
  if (!doc.has('volumes')) doc.set('volumes', doc.createNode([]));
  (doc.get('volumes') as { add(x: unknown): void }).add(doc.createNode(volume));
  await saveDoc(path, doc);
}

interface PairPayload {
  v: 1;
  node: string;
  url: string;
  secret: string;
  /** The node's own TLS certificate (PEM) when it listens with TLS: the peer pins it. */
  cert?: string;
}

function encodeToken(p: PairPayload): string {
  return 'hs1.' + Buffer.from(JSON.stringify(p)).toString('base64url');
}

function decodeToken(token: string): PairPayload {
  // Cut when copied, or not a token at all: say which, so the operator knows what to fix.
  const bad = (why: string) => new HeadstartError('CONFIG_INVALID', `not a headstart pairing token: ${why}; copy the whole token that \`headstart pair token\` printed`);
  if (!token.startsWith('hs1.')) throw bad('a token starts with "hs1."');
  let p: unknown;
  try {
    p = JSON.parse(Buffer.from(token.slice(4), 'base64url').toString('utf8'));
  } catch {
    throw bad('its text after "hs1." does not decode (cut short, or changed)');
  }
  const o = p as Partial<PairPayload>;
  const missing = (['node', 'url', 'secret'] as const).filter((k) => typeof o[k] !== 'string');
  if (o.v !== 1 || missing.length > 0) throw bad(o.v !== 1 ? 'it is not a version 1 token' : `it has no ${missing.join(', ')}`);
  if (o.secret!.length < 16) throw bad('its secret is too short');
  checkPeerUrl(o.url!, 'the pairing token\'s url');
  if (!/^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/.test(o.node!)) throw new HeadstartError('CONFIG_INVALID', `the pairing token names a node ${JSON.stringify(o.node!)}, which is not a valid node name`);
  if (o.cert !== undefined) {
    try {
      if (typeof o.cert !== 'string') throw new Error('not text');
      new X509Certificate(o.cert);
    } catch (err) {
      throw new HeadstartError('CONFIG_INVALID', `the pairing token's certificate is not a valid X.509 certificate (${(err as Error).message})`);
    }
  }
  return o as PairPayload;
}

/** A peer URL by the configuration's own rule (PEER_URL), refused here rather than on the other site. */
function checkPeerUrl(url: string, what: string): void {
  if (!PEER_URL.test(url)) throw new HeadstartError('CONFIG_INVALID', `${what} ${JSON.stringify(url)} is not a ws:// or wss:// address (e.g. wss://site-a.example:10800)`);
}

function ownUrl(doc: Document, given?: string): string {
  if (given) {
    checkPeerUrl(given, '--url');
    return given;
  }
  const peers = doc.getIn(['listen', 'peers']) as string | undefined;
  if (!peers) throw new HeadstartError('CONFIG_INVALID', 'listen.peers is not set: give --url wss://host:port (the address peers reach this node at)');
  return `${doc.has('tls') ? 'wss' : 'ws'}://${peers}`;
}

/** This node's certificate for a pairing token, when it listens with TLS. */
async function ownCert(path: string, doc: Document): Promise<string | undefined> {
  const cert = doc.getIn(['tls', 'cert']) as string | undefined;
  if (cert === undefined) return undefined;
  const file = resolve(dirname(resolve(path)), cert);
  try {
    return await readFile(file, 'utf8');
  } catch (err) {
    throw new HeadstartError('CONFIG_INVALID', `tls.cert: cannot read ${file}: ${(err as Error).message}`, { cause: err });
  }
}

export async function pairToken(path: string, url?: string): Promise<string> {
  const doc = await loadDoc(path);
  let secret = doc.getIn(['node', 'secret']) as string | undefined;
  if (!secret) {
    secret = randomBytes(24).toString('hex');
    doc.setIn(['node', 'secret'], secret);
    await saveDoc(path, doc);
  }
  return encodeToken({ v: 1, node: String(doc.getIn(['node', 'name'])), url: ownUrl(doc, url), secret, cert: await ownCert(path, doc) });
}

/** Stores the peer and the shared secret; returns the token the other site accepts to list this node (null: this node listens for no peer). */
export async function pairAccept(path: string, token: string, url?: string): Promise<{ readonly peer: string; readonly self: string; readonly reply: string | null; readonly sameSecret: boolean }> {
  const p = decodeToken(token);
  const doc = await loadDoc(path);
  const mine = doc.getIn(['node', 'secret']) as string | undefined;
  const hadSame = mine === p.secret;
  if (!doc.has('peers')) doc.set('peers', doc.createNode([]));
  const peers = doc.get('peers') as { items: { get(k: string): unknown; set(k: string, v: unknown): void }[]; add(x: unknown): void };
  // One secret per node serves every peer: taking another node's secret here would lock out
  // the peers already paired with this one (their links fail LINK_AUTH_FAILED), silently.
  const others = (peers.items ?? []).map((i) => String(i.get('name'))).filter((n) => n !== p.node);
  if (!hadSame && mine !== undefined && others.length > 0) {
    throw new HeadstartError(
      'CONFIG_INVALID',
      `this node is already paired with ${others.join(', ')} under another secret; accepting ${p.node}'s token would replace it and cut ${others.length === 1 ? 'that pairing' : 'those pairings'}. Pair the other way round: run \`headstart pair token\` here and accept it on ${p.node} (a node with no peers yet takes the shared secret)`,
    );
  }
  doc.setIn(['node', 'secret'], p.secret);
  // The peer's certificate is pinned: it is the peer's identity, whatever address reaches it.
  const pinned = p.cert === undefined ? undefined : `./peer-${p.node}.crt`;
  if (pinned) await writeFile(resolve(dirname(resolve(path)), pinned), p.cert!, { mode: 0o644 });
  const entry: Record<string, unknown> = { name: p.node, url: p.url, ...(pinned ? { ca: pinned, verifyHost: false } : {}) };
  const existing = peers.items.find((i) => i.get('name') === p.node);
  if (existing) for (const [k, v] of Object.entries(entry)) existing.set(k, v);
  else peers.add(doc.createNode(entry));
  await saveDoc(path, doc);
  // The reply lets the peer list this node. Sharing its secret already (the reply of an
  // exchange, or a third site paired through another) does not mean it lists this node: the
  // reply is always given, and accepting it twice changes nothing.
  // (A node that listens for no peer has no address to give; as the reply of an exchange, it needs none.)
  const self = String(doc.getIn(['node', 'name']));
  const listens = url !== undefined || doc.getIn(['listen', 'peers']) !== undefined;
  const reply = hadSame && !listens ? null : encodeToken({ v: 1, node: self, url: ownUrl(doc, url), secret: p.secret, cert: await ownCert(path, doc) });
  return { peer: p.node, self, reply, sameSecret: hadSame };
}
