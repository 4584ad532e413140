/**
 * Helpers for the NBD end-to-end tests: a real headstart Volume in a temp dir exported by
 * a real server on 127.0.0.1:0, real client processes, and a logger that keeps lines so a
 * test can assert why a connection was closed.
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Socket } from 'node:net';
import { createVolume, type Volume } from '@headstart/volume';
import { startNbdServer, type NbdLogger, type NbdServer, type NbdServerOptions } from '@headstart/nbd';

export interface LogLine {
  level: 'info' | 'warn' | 'error';
  fields: Record<string, unknown>;
  msg: string;
}

export function memoryLogger(): NbdLogger & { lines: LogLine[] } {
  const lines: LogLine[] = [];
  const at = (level: LogLine['level']) => (fields: object, msg?: string) => void lines.push({ level, fields: fields as Record<string, unknown>, msg: msg ?? '' });
  return { lines, info: at('info'), warn: at('warn'), error: at('error') };
}

export interface Rig {
  readonly server: NbdServer;
  readonly volume: Volume;
  readonly dir: string;
  readonly logger: ReturnType<typeof memoryLogger>;
  uri(name?: string): string;
  /** Another volume in the rig's temp dir (shut down by close()). */
  newVolume(name: string, size: number): Promise<Volume>;
  close(): Promise<void>;
}

/** A Volume of `size` bytes exported as `vol`. */
export async function startRig(size: number, options: Partial<NbdServerOptions> = {}): Promise<Rig> {
  const dir = await mkdtemp(join(tmpdir(), 'headstart-nbd-'));
  const volumes: Volume[] = [];
  const volume = await createVolume(join(dir, 'vol'), { size });
  volumes.push(volume);
  const logger = memoryLogger();
  const server = await startNbdServer({ logger, ...options, exports: { vol: volume, ...(options.exports ?? {}) } });
  return {
    server,
    volume,
    dir,
    logger,
    uri: (name = 'vol') => `nbd://127.0.0.1:${server.port}/${name}`,
    async newVolume(name, sz) {
      const v = await createVolume(join(dir, name), { size: sz });
      volumes.push(v);
      return v;
    },
    async close() {
      await server.stop();
      for (const v of volumes) await v.shutdown();
      await rm(dir, { recursive: true, force: true });
    },
  };
}

export interface RunResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Debian's libnbd Python binding lives in the system Python, not in a pyenv one. */
export const SYSTEM_PYTHON = '/usr/bin/python3';
const CLIENT_ENV = { ...process.env, PATH: `/usr/bin:/bin:${process.env.PATH ?? ''}`, LIBNBD_DEBUG: '0' };

export function run(cmd: string, args: string[], options: { timeoutMs?: number; input?: string } = {}): Promise<RunResult> {
  return new Promise((resolve) => {
    const child = execFile(cmd, args, { env: CLIENT_ENV, timeout: options.timeoutMs ?? 60_000, maxBuffer: 64 * 1024 * 1024 }, (err, stdout, stderr) => {
      // execFile's error carries the exit status as a number in `code` (a string for spawn errors).
      const status: unknown = err ? (err as { code?: unknown }).code : 0;
      resolve({ code: typeof status === 'number' ? status : 1, stdout: String(stdout), stderr: String(stderr) });
    });
    if (options.input !== undefined) child.stdin!.end(options.input);
  });
}

/** Runs a Python script with libnbd imported as `nbd`; the script prints one JSON object. */
export async function nbdPython(script: string, timeoutMs = 60_000): Promise<Record<string, unknown>> {
  const r = await run(SYSTEM_PYTHON, ['-c', `import nbd, json, errno, sys\n${script}`], { timeoutMs });
  if (r.code !== 0) throw new Error(`python failed (${r.code}): ${r.stderr}`);
  const last = r.stdout.trim().split('\n').at(-1) ?? '';
  return JSON.parse(last) as Record<string, unknown>;
}

export function spawnClient(cmd: string, args: string[]): ChildProcess {
  return spawn(cmd, args, { env: CLIENT_ENV, stdio: ['ignore', 'pipe', 'pipe'] });
}

// --- raw wire pieces, for what real clients never send (malformed options, odd requests) ---

/** A client option: IHAVEOPT, the option code, its data. */
export function option(code: number, data: Buffer = Buffer.alloc(0)): Buffer {
  const b = Buffer.alloc(16);
  b.writeBigUInt64BE(0x49484156454f5054n, 0);
  b.writeUInt32BE(code, 8);
  b.writeUInt32BE(data.length, 12);
  return Buffer.concat([b, data]);
}

/** A transmission request header (28 bytes; a WRITE's payload follows it). */
export function requestHeader(type: number, handle: bigint, offset: bigint, length: number, flags = 0): Buffer {
  const b = Buffer.alloc(28);
  b.writeUInt32BE(0x25609513, 0);
  b.writeUInt16BE(flags, 4);
  b.writeUInt16BE(type, 6);
  b.writeBigUInt64BE(handle, 8);
  b.writeBigUInt64BE(offset, 16);
  b.writeUInt32BE(length, 24);
  return b;
}

/** Reads exactly n bytes at a time from what `s` receives. */
export function byteReader(s: Socket): { take(n: number): Promise<Buffer> } {
  let buf = Buffer.alloc(0);
  let waiter: (() => void) | null = null;
  s.on('data', (c: Buffer) => {
    buf = Buffer.concat([buf, c]);
    waiter?.();
  });
  s.on('error', () => {});
  return {
    async take(n: number): Promise<Buffer> {
      while (buf.length < n) await new Promise<void>((r) => (waiter = r));
      const out = buf.subarray(0, n);
      buf = buf.subarray(n);
      return out;
    },
  };
}

/** Python for scripts run with nbdPython: err(f) is 0 if f() succeeds, else the errno the server answered. */
export const PY_ERRNO = `def err(f):
    try:
        f()
        return 0
    except nbd.Error as e:
        return e.errnum`;
