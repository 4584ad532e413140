/**
 * A small NBD client: fixed-newstyle handshake with NBD_OPT_GO, then pipelined simple-reply
 * requests matched by handle. headstart's workload generator and tests use it to write
 * through the NBD export like any other client would, without needing Debian's tools.
 */
import { connect, type Socket } from 'node:net';
import { HeadstartError } from '@headstart/errors';
import {
  IHAVEOPT,
  NBDMAGIC,
  NBD_FLAG_C_FIXED_NEWSTYLE,
  NBD_FLAG_C_NO_ZEROES,
  NBD_FLAG_FIXED_NEWSTYLE,
  NBD_FLAG_NO_ZEROES,
  NBD_FLAG_READ_ONLY,
  NBD_INFO_EXPORT,
  NBD_OPT_GO,
  NBD_REP_ACK,
  NBD_REP_INFO,
  OPTION_REPLY_MAGIC,
  REQUEST_MAGIC,
  SIMPLE_REPLY_MAGIC,
} from './constants';

const CMD_READ = 0;
const CMD_WRITE = 1;
const CMD_DISC = 2;
const CMD_FLUSH = 3;
const CMD_TRIM = 4;
const CMD_WRITE_ZEROES = 6;
const CMD_FLAG_FUA = 1;

export interface NbdClient {
  readonly size: number;
  readonly readOnly: boolean;
  read(offset: number, length: number): Promise<Buffer>;
  write(offset: number, data: Uint8Array, options?: { fua?: boolean }): Promise<void>;
  writeZeroes(offset: number, length: number): Promise<void>;
  trim(offset: number, length: number): Promise<void>;
  flush(): Promise<void>;
  /** Sends NBD_CMD_DISC after outstanding requests and closes the socket. */
  close(): Promise<void>;
}

interface Pending {
  readonly readLength: number;
  resolve(data: Buffer | null): void;
  reject(err: Error): void;
}

/** Buffers socket data and hands out exact byte counts. */
class ByteReader {
  private chunks: Buffer[] = [];
  private buffered = 0;
  private waiter: { n: number; resolve: (b: Buffer) => void; reject: (e: Error) => void } | null = null;
  private failed: Error | null = null;

  push(chunk: Buffer): void {
    this.chunks.push(chunk);
    this.buffered += chunk.length;
    this.wake();
  }

  fail(err: Error): void {
    this.failed = err;
    if (this.waiter) {
      this.waiter.reject(err);
      this.waiter = null;
    }
  }

  take(n: number): Promise<Buffer> {
    if (this.failed) return Promise.reject(this.failed);
    return new Promise((resolve, reject) => {
      this.waiter = { n, resolve, reject };
      this.wake();
    });
  }

  private wake(): void {
    if (!this.waiter || this.buffered < this.waiter.n) return;
    const { n, resolve } = this.waiter;
    this.waiter = null;
    const all = this.chunks.length === 1 ? this.chunks[0] : Buffer.concat(this.chunks);
    const out = all.subarray(0, n);
    const rest = all.subarray(n);
    this.chunks = rest.length > 0 ? [rest] : [];
    this.buffered = rest.length;
    resolve(out);
  }
}

function protocolError(message: string): HeadstartError {
  return new HeadstartError('NBD_CLIENT_PROTOCOL', message);
}

export async function connectNbd(options: { host: string; port: number; exportName: string }): Promise<NbdClient> {
  const socket: Socket = connect({ host: options.host, port: options.port });
  socket.setNoDelay(true);
  const reader = new ByteReader();
  socket.on('data', (d: Buffer) => reader.push(d));
  const closed = new Promise<void>((resolve) => socket.once('close', () => resolve()));
  socket.on('error', (err) => reader.fail(err));
  socket.on('close', () => reader.fail(new HeadstartError('NBD_CLIENT_PROTOCOL', 'connection closed by the NBD server')));
  await new Promise<void>((resolve, reject) => {
    socket.once('connect', resolve);
    socket.once('error', reject);
  });

  try {
    const greeting = await reader.take(18);
    if (greeting.readBigUInt64BE(0) !== NBDMAGIC || greeting.readBigUInt64BE(8) !== IHAVEOPT) throw protocolError('not an NBD newstyle server');
    const serverFlags = greeting.readUInt16BE(16);
    if ((serverFlags & NBD_FLAG_FIXED_NEWSTYLE) === 0) throw protocolError('server does not speak fixed newstyle');
    const clientFlags = Buffer.alloc(4);
    clientFlags.writeUInt32BE(NBD_FLAG_C_FIXED_NEWSTYLE | (serverFlags & NBD_FLAG_NO_ZEROES ? NBD_FLAG_C_NO_ZEROES : 0));
    const name = Buffer.from(options.exportName, 'utf8');
    const go = Buffer.alloc(16 + 4 + name.length + 2);
    go.writeBigUInt64BE(IHAVEOPT, 0);
    go.writeUInt32BE(NBD_OPT_GO, 8);
    go.writeUInt32BE(4 + name.length + 2, 12);
    go.writeUInt32BE(name.length, 16);
    name.copy(go, 20);
    go.writeUInt16BE(0, 20 + name.length);
    socket.write(Buffer.concat([clientFlags, go]));

    let size = -1;
    let transmissionFlags = 0;
    for (;;) {
      const head = await reader.take(20);
      if (head.readBigUInt64BE(0) !== OPTION_REPLY_MAGIC) throw protocolError('bad option reply magic');
      const type = head.readUInt32BE(12);
      const length = head.readUInt32BE(16);
      const data = length > 0 ? await reader.take(length) : Buffer.alloc(0);
      if (type === NBD_REP_ACK) break;
      if (type === NBD_REP_INFO && data.length >= 12 && data.readUInt16BE(0) === NBD_INFO_EXPORT) {
        size = Number(data.readBigUInt64BE(2));
        transmissionFlags = data.readUInt16BE(10);
      } else if (type >= 0x80000000) {
        throw protocolError(`server refused export ${JSON.stringify(options.exportName)} (reply ${type - 0x80000000}): ${data.toString('utf8')}`);
      }
    }
    if (size < 0) throw protocolError('server sent no export information');
    return new Client(socket, reader, size, (transmissionFlags & NBD_FLAG_READ_ONLY) !== 0, closed);
  } catch (err) {
    socket.destroy();
    throw err;
  }
}

class Client implements NbdClient {
  private readonly pending = new Map<number, Pending>();
  private nextHandle = 1;
  private failure: Error | null = null;

  constructor(
    private readonly socket: Socket,
    private readonly reader: ByteReader,
    readonly size: number,
    readonly readOnly: boolean,
    private readonly closed: Promise<void>,
  ) {
    void this.readReplies();
  }

  read(offset: number, length: number): Promise<Buffer> {
    return this.request(CMD_READ, 0, offset, length, null) as Promise<Buffer>;
  }
  async write(offset: number, data: Uint8Array, options?: { fua?: boolean }): Promise<void> {
    await this.request(CMD_WRITE, options?.fua ? CMD_FLAG_FUA : 0, offset, data.length, data);
  }
  async writeZeroes(offset: number, length: number): Promise<void> {
    await this.request(CMD_WRITE_ZEROES, 0, offset, length, null);
  }
  async trim(offset: number, length: number): Promise<void> {
    await this.request(CMD_TRIM, 0, offset, length, null);
  }
  async flush(): Promise<void> {
    await this.request(CMD_FLUSH, 0, 0, 0, null);
  }

  async close(): Promise<void> {
    await Promise.allSettled([...this.pending.values()].map((p) => new Promise<void>((resolve) => {
      const { resolve: r, reject: j } = p;
      p.resolve = (d) => (r(d), resolve());
      p.reject = (e) => (j(e), resolve());
    })));
    if (!this.socket.destroyed) {
      this.socket.end(this.header(CMD_DISC, 0, 0, 0, 0));
      await Promise.race([this.closed, new Promise((r) => setTimeout(r, 2000))]);
      this.socket.destroy();
    }
  }

  private header(type: number, flags: number, handle: number, offset: number, length: number): Buffer {
    const h = Buffer.allocUnsafe(28);
    h.writeUInt32BE(REQUEST_MAGIC, 0);
    h.writeUInt16BE(flags, 4);
    h.writeUInt16BE(type, 6);
    h.writeBigUInt64BE(BigInt(handle), 8);
    h.writeBigUInt64BE(BigInt(offset), 16);
    h.writeUInt32BE(length, 24);
    return h;
  }

  private request(type: number, flags: number, offset: number, length: number, data: Uint8Array | null): Promise<Buffer | null> {
    if (this.failure) return Promise.reject(this.failure);
    const handle = this.nextHandle++;
    return new Promise((resolve, reject) => {
      this.pending.set(handle, { readLength: type === CMD_READ ? length : 0, resolve, reject });
      this.socket.cork();
      this.socket.write(this.header(type, flags, handle, offset, length));
      if (data !== null) this.socket.write(data);
      this.socket.uncork();
    });
  }

  private async readReplies(): Promise<void> {
    try {
      for (;;) {
        const head = await this.reader.take(16);
        if (head.readUInt32BE(0) !== SIMPLE_REPLY_MAGIC) throw protocolError('bad reply magic');
        const error = head.readUInt32BE(4);
        const handle = Number(head.readBigUInt64BE(8));
        const p = this.pending.get(handle);
        if (p === undefined) throw protocolError(`reply for unknown handle ${handle}`);
        this.pending.delete(handle);
        if (error !== 0) {
          const err = new HeadstartError('NBD_CLIENT_REQUEST_FAILED', `NBD server answered error ${error} (${errnoName(error)})`, { details: { errno: error } });
          p.reject(err);
          continue;
        }
        p.resolve(p.readLength > 0 ? Buffer.from(await this.reader.take(p.readLength)) : null);
      }
    } catch (err) {
      this.failure = err as Error;
      for (const p of this.pending.values()) p.reject(err as Error);
      this.pending.clear();
    }
  }
}

function errnoName(errno: number): string {
  return ({ 1: 'EPERM', 5: 'EIO', 12: 'ENOMEM', 22: 'EINVAL', 28: 'ENOSPC', 75: 'EOVERFLOW', 95: 'ENOTSUP', 108: 'ESHUTDOWN' } as Record<number, string>)[errno] ?? 'unknown';
}
