/**
 * A trace file's bytes, decompressed: public traces come compressed (MSR Cambridge as
 * .csv.gz, the UMass SPC traces as .spc.bz2, others as .xz or .zst). The compression is
 * told by the file's magic bytes, not its name. gzip is decompressed in process (zlib);
 * bzip2, xz, zstd and lz4 through the system's own program (`bzip2 -dc` and so on), streamed,
 * so a multi-gigabyte trace never sits in memory. A missing program, a damaged stream or an
 * archive (tar, zip: several files, so which one is the trace?) is a clear error.
 */
import { spawn } from 'node:child_process';
import { createReadStream } from 'node:fs';
import { open, type FileHandle } from 'node:fs/promises';
import { createGunzip } from 'node:zlib';
import { HeadstartError } from '@headstart/errors';

export type Compression = 'gzip' | 'bzip2' | 'xz' | 'zstd' | 'lz4';

const MAGIC: readonly [Compression, readonly number[]][] = [
  ['gzip', [0x1f, 0x8b]],
  ['bzip2', [0x42, 0x5a, 0x68]], // "BZh"
  ['xz', [0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00]],
  ['zstd', [0x28, 0xb5, 0x2f, 0xfd]],
  ['lz4', [0x04, 0x22, 0x4d, 0x18]],
];

/** The program that decompresses each format other than gzip, and the Debian package that has it. */
const PROGRAM: Record<Exclude<Compression, 'gzip'>, { program: string; pkg: string }> = {
  bzip2: { program: 'bzip2', pkg: 'bzip2' },
  xz: { program: 'xz', pkg: 'xz-utils' },
  zstd: { program: 'zstd', pkg: 'zstd' },
  lz4: { program: 'lz4', pkg: 'lz4' },
};

const READ_BYTES = 1 << 20;
/** What of a decompressor's complaint goes into an error message. */
const STDERR_KEEP = 2048;

function startsWith(head: Uint8Array, magic: readonly number[]): boolean {
  return head.length >= magic.length && magic.every((b, i) => head[i] === b);
}

/** The compression a file's first bytes announce, or null for none. */
export function compressionOf(head: Uint8Array): Compression | null {
  for (const [name, magic] of MAGIC) if (startsWith(head, magic)) return name;
  return null;
}

/** Throws when `head` (decompressed) is an archive of several files rather than one trace. */
export function refuseArchive(head: Uint8Array, path: string): void {
  const zip = startsWith(head, [0x50, 0x4b, 0x03, 0x04]);
  const sevenZip = startsWith(head, [0x37, 0x7a, 0xbc, 0xaf, 0x27, 0x1c]);
  const tar = head.length >= 262 && Buffer.from(head.subarray(257, 262)).toString('latin1') === 'ustar';
  if (!zip && !sevenZip && !tar) return;
  const kind = zip ? 'zip' : sevenZip ? '7z' : 'tar';
  throw new HeadstartError('TRACE_FORMAT_UNKNOWN', `${path} is a ${kind} archive, not one trace: extract the trace file from it and read that`);
}

function ioError(path: string, err: unknown): HeadstartError {
  return new HeadstartError('TRACE_IO', `cannot read trace ${path}: ${(err as Error)?.message ?? String(err)}`, { cause: err });
}

/** The decompressor's first line of complaint, as ": ..." (bzip2 adds a page of advice after it). */
function firstLine(stderr: string): string {
  const line = stderr.split('\n').find((l) => l.trim() !== '');
  return line === undefined ? '' : `: ${line.trim().slice(0, 300)}`;
}

function damaged(path: string, compression: Compression, why: string, cause?: unknown): HeadstartError {
  return new HeadstartError('TRACE_MALFORMED', `trace ${path}: its ${compression} stream is damaged or cut short (${why})`, { cause, details: { compression } });
}

async function openTrace(path: string): Promise<FileHandle> {
  try {
    return await open(path, 'r');
  } catch (err) {
    throw ioError(path, err);
  }
}

/** The first bytes of the file itself (compressed or not). */
async function rawHead(path: string): Promise<Uint8Array> {
  const fh = await openTrace(path);
  try {
    const buf = Buffer.alloc(16);
    const { bytesRead } = await fh.read(buf, 0, 16, 0);
    return buf.subarray(0, bytesRead);
  } catch (err) {
    throw ioError(path, err);
  } finally {
    await fh.close();
  }
}

async function* plainBytes(path: string): AsyncGenerator<Uint8Array> {
  const fh = await openTrace(path);
  try {
    for (;;) {
      // A fresh buffer per chunk: the consumer may keep a chunk while the next is read.
      const buf = Buffer.allocUnsafe(READ_BYTES);
      let n: number;
      try {
        n = (await fh.read(buf, 0, READ_BYTES, null)).bytesRead;
      } catch (err) {
        throw ioError(path, err);
      }
      if (n === 0) return;
      yield buf.subarray(0, n);
    }
  } finally {
    await fh.close();
  }
}

async function* gunzipBytes(path: string): AsyncGenerator<Uint8Array> {
  const file = createReadStream(path, { highWaterMark: READ_BYTES });
  const gunzip = createGunzip({ chunkSize: 256 * 1024 });
  let fileError: unknown = null;
  file.on('error', (err) => {
    fileError = err;
    gunzip.destroy(err);
  });
  file.pipe(gunzip);
  try {
    for await (const chunk of gunzip) yield chunk as Buffer;
  } catch (err) {
    if (fileError !== null) throw ioError(path, fileError);
    throw damaged(path, 'gzip', (err as Error).message, err);
  } finally {
    file.destroy();
    gunzip.destroy();
  }
}

async function* programBytes(path: string, compression: Exclude<Compression, 'gzip'>): AsyncGenerator<Uint8Array> {
  const { program, pkg } = PROGRAM[compression];
  const child = spawn(program, ['-d', '-c', '--', path], { stdio: ['ignore', 'pipe', 'pipe'] });
  let stderr = '';
  child.stderr.setEncoding('utf8');
  child.stderr.on('data', (s: string) => {
    if (stderr.length < STDERR_KEEP) stderr += s;
  });
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null; err: NodeJS.ErrnoException | null }>((resolve) => {
    child.once('error', (err) => resolve({ code: null, signal: null, err }));
    child.once('close', (code, signal) => resolve({ code, signal, err: null }));
  });
  let finished = false;
  try {
    for await (const chunk of child.stdout) yield chunk as Buffer;
    const { code, signal, err } = await exited;
    finished = true;
    if (err !== null) {
      if (err.code === 'ENOENT') throw new HeadstartError('TRACE_IO', `trace ${path} is ${compression}-compressed and there is no \`${program}\` program on PATH to decompress it: install it (Debian: apt-get install ${pkg}) or decompress the file first`, { cause: err });
      throw ioError(path, err);
    }
    if (code !== 0) throw damaged(path, compression, `${program} ${signal !== null ? `was killed by ${signal}` : `exited with status ${code}`}${firstLine(stderr)}`);
  } finally {
    // The reader stopped early (enough for detection, or an error): the program goes too.
    if (!finished) {
      child.stdout.destroy();
      child.kill('SIGTERM');
      await exited;
    }
  }
}

/**
 * The decompressed bytes of a trace file, in chunks. `compression` is what the file's magic
 * said (rawHead); archives are refused once the first decompressed bytes show one.
 */
export async function* traceBytes(path: string): AsyncGenerator<Uint8Array> {
  const compression = compressionOf(await rawHead(path));
  const chunks = compression === null ? plainBytes(path) : compression === 'gzip' ? gunzipBytes(path) : programBytes(path, compression);
  let checked = false;
  let held: Uint8Array[] = [];
  let heldBytes = 0;
  for await (const chunk of chunks) {
    if (checked) {
      yield chunk;
      continue;
    }
    // Enough of the head to tell an archive (a tar header's magic sits at byte 257).
    held.push(chunk);
    heldBytes += chunk.length;
    if (heldBytes < 512) continue;
    const head = Buffer.concat(held);
    refuseArchive(head, path);
    checked = true;
    held = [];
    yield head;
  }
  if (!checked && heldBytes > 0) {
    const head = Buffer.concat(held);
    refuseArchive(head, path);
    yield head;
  }
}
