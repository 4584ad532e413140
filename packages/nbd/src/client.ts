/**
 * A small NBD client for headstart's own tools and tests (the workload generator, the DR
 * drill): fixed-newstyle handshake with NBD_OPT_GO, simple replies, requests pipelined and
 * matched by handle. Real clients (qemu, libnbd, the kernel) remain the reference; this one
 * is tested against both our server and nbdkit.
 */
import { connect, type Socket } from 'node:net';
import { HeadstartError } from '@headstart/errors';
import {
  IHAVEOPT,
  NBD_CMD_DISC,
  NBD_CMD_FLAG_FUA,
  NBD_CMD_FLUSH,
  NBD_CMD_READ,
  NBD_CMD_TRIM,
  NBD_CMD_WRITE,
  NBD_CMD_WRITE_ZEROES,
  NBD_FLAG_C_FIXED_NEWSTYLE,
  NBD_FLAG_C_NO_ZEROES,
  NBD_FLAG_FIXED_NEWSTYLE,
  NBD_FLAG_NO_ZEROES,
  NBD_FLAG_READ_ONLY,
  NBD_INFO_EXPORT,
  NBD_OPT_GO,
  NBD_REP_ACK,
  NBD_REP_ERR_UNKNOWN,
  NBD_REP_INFO,
  NBDMAGIC,
  OPTION_REPLY_MAGIC,
  REQUEST_HEADER_SIZE,
  REQUEST_MAGIC,
  SIMPLE_REPLY_MAGIC,
} from './constants';

export interface NbdClient {
  readonly exportName: string;
  readonly size: number;
  readonly readOnly: boolean;
  /** The transmission flags the server sent. */
  readonly flags: number;
  read(offset: number, length: number): Promise<Buffer>;
  write(offset: number, data: Uint8Array, options?: { fua?: boolean }): Promise<void>;
  writeZeroes(offset: number, length: number, options?: { fua?: boolean }): Promise<void>;
  trim(offset: number, length: number, options?: { fua?: boolean }): Promise<void>;
  flush(): Promise<void>;
  /** Sends NBD_CMD_DISC after the requests in flight and closes the connection. */
  close(): Promise<void>;
}

export interface ConnectNbdOptions {
  readonly host?: string;
  readonly port: number;
  /** Default: the empty name (the server's default export). */
  readonly exportName?: string;
  /** For the connection and handshake. Default 10 s. */
  readonly timeoutMs?: number;
}

/** Bytes received and not yet consumed; take() waits for enough of them. */
class Inbox {
  private chunks: Buffer[] = [];
  private length = 0;
  private waiter: { n: number; resolve: (b: Buffer) => void; reject: (e: Error) => void } | null = null;
  private failed: Error | null = null;

  push(chunk: Buffer): void {
    this.chunks.push(chunk);
    this.length += chunk.length;
    this.wake();
  }

  fail(err: Error): void {
    this.failed = err;
    this.waiter?.reject(err);
    this.waiter = null;
  }

  take(n: number): Promise<Buffer> {
    if (this.length >= n) return Promise.resolve(this.pop(n));
    if (this.failed) return Promise.reject(this.failed);
    return new Promise((resolve, reject) => (this.waiter = { n, resolve, reject }));
  }

  /** Synchronous variant for the reply loop: null if not enough bytes yet. */
  tryTake(n: number): Buffer | null {
    return this.length >= n ? this.pop(n) : null;
  }

  private wake(): void {
    if (this.waiter && this.length >= this.waiter.n) {
      const w = this.waiter;
      this.waiter = null;
      w.resolve(this.pop(w.n));
    }
  }

  private pop(n: number): Buffer {
    this.length -= n;
    if (this.chunks[0].length === n) return this.chunks.shift()!;
    if (this.chunks[0].length > n) {
      const out = this.chunks[0].subarray(0, n);
      this.chunks[0] = this.chunks[0].subarray(n);
      return out;
    }
    const out = Buffer.allocUnsafe(n);
    let filled = 0;
    while (filled < n) {
      const c = this.chunks[0];
      const k = Math.min(c.length, n - filled);
      c.copy(out, filled, 0, k);
      filled += k;
      if (k === c.length) this.chunks.shift();
      else this.chunks[0] = c.subarray(k);
    }
    return out;
  }
}

interface Pending {
  readonly isRead: boolean;
  readonly readLength: number;
  resolve(data: Buffer | undefined): void;
  reject(err: Error): void;
}

/**
 * Connects and negotiates the export. A failure to get there (refused, unknown host, reset,
 * closed during the handshake, timeout) rejects with NBD_CLIENT_PROTOCOL naming host:port
 * and the cause; a server that refuses the export name, with NBD_EXPORT_UNKNOWN.
 */
export async function connectNbd(options: ConnectNbdOptions): Promise<NbdClient> {
  const exportName = options.exportName ?? '';
  const host = options.host ?? '127.0.0.1';
  const where = address(host, options.port);
  const socket = connect(options.port, host);
  socket.setNoDelay(true);
  const inbox = new Inbox();
  let connected = false;
  let closedError: Error | null = null;
  socket.on('data', (c: Buffer) => inbox.push(c));
  socket.on('error', (err) => (closedError ??= connected ? err : connectError(host, options.port, err)));
  socket.on('close', () => {
    closedError ??= connected
      ? new HeadstartError('NBD_CLIENT_PROTOCOL', 'NBD connection closed')
      : new HeadstartError('NBD_CLIENT_PROTOCOL', `cannot connect to the NBD server at ${where}: connection closed during the handshake`, { details: { host, port: options.port } });
    inbox.fail(closedError);
  });
  const timer = setTimeout(() => socket.destroy(new HeadstartError('NBD_CLIENT_PROTOCOL', `no NBD handshake from ${where} in time`, { details: { host, port: options.port } })), options.timeoutMs ?? 10_000);
  try {
    const { size, flags } = await handshake(socket, inbox, exportName);
    clearTimeout(timer);
    connected = true;
    return new Client(socket, inbox, exportName, size, flags);
  } catch (err) {
    clearTimeout(timer);
    socket.destroy();
    throw err;
  }
}

/**
 * A socket error before the handshake finished, as a HeadstartError: "cannot connect to the
 * NBD server at 127.0.0.1:1: connect ECONNREFUSED" (Node's own message repeats the address).
 */
function connectError(host: string, port: number, err: Error): HeadstartError {
  if (err instanceof HeadstartError) return err; // our handshake timeout
  const { code, syscall } = err as NodeJS.ErrnoException;
  // Every address of a name refused (Node's happy eyeballs): an AggregateError with a code, no message.
  const cause = code && syscall ? `${syscall} ${code}` : err.message || (code ? `connect ${code}` : String(err));
  return new HeadstartError('NBD_CLIENT_PROTOCOL', `cannot connect to the NBD server at ${address(host, port)}: ${cause}`, { cause: err, details: { host, port, errno: code } });
}

function address(host: string, port: number): string {
  return host.includes(':') ? `[${host}]:${port}` : `${host}:${port}`;
}

async function handshake(socket: Socket, inbox: Inbox, exportName: string): Promise<{ size: number; flags: number }> {
  const greeting = await inbox.take(18);
  if (greeting.readBigUInt64BE(0) !== NBDMAGIC || greeting.readBigUInt64BE(8) !== IHAVEOPT) throw new HeadstartError('NBD_CLIENT_PROTOCOL', 'the server is not a newstyle NBD server');
  const serverFlags = greeting.readUInt16BE(16);
  if ((serverFlags & NBD_FLAG_FIXED_NEWSTYLE) === 0) throw new HeadstartError('NBD_CLIENT_PROTOCOL', 'the server does not speak fixed newstyle NBD');
  const clientFlags = NBD_FLAG_C_FIXED_NEWSTYLE | (serverFlags & NBD_FLAG_NO_ZEROES ? NBD_FLAG_C_NO_ZEROES : 0);
  const name = Buffer.from(exportName, 'utf8');
  const opt = Buffer.alloc(4 + 16 + 4 + name.length + 2);
  opt.writeUInt32BE(clientFlags, 0);
  opt.writeBigUInt64BE(IHAVEOPT, 4);
  opt.writeUInt32BE(NBD_OPT_GO, 12);
  opt.writeUInt32BE(4 + name.length + 2, 16);
  opt.writeUInt32BE(name.length, 20);
  name.copy(opt, 24); // then u16 0: no info requests beyond the mandatory NBD_INFO_EXPORT
  socket.write(opt);
  let size = -1;
  let flags = 0;
  for (;;) {
    const head = await inbox.take(20);
    if (head.readBigUInt64BE(0) !== OPTION_REPLY_MAGIC) throw new HeadstartError('NBD_CLIENT_PROTOCOL', 'bad option reply magic');
    const type = head.readUInt32BE(12);
    const length = head.readUInt32BE(16);
    if (length > 65536) throw new HeadstartError('NBD_CLIENT_PROTOCOL', 'option reply too long');
    const data = length > 0 ? await inbox.take(length) : Buffer.alloc(0);
    if (type === NBD_REP_INFO && data.length >= 12 && data.readUInt16BE(0) === NBD_INFO_EXPORT) {
      size = Number(data.readBigUInt64BE(2));
      flags = data.readUInt16BE(10);
    } else if (type === NBD_REP_ACK) {
      if (size < 0) throw new HeadstartError('NBD_CLIENT_PROTOCOL', 'server accepted NBD_OPT_GO without NBD_INFO_EXPORT');
      return { size, flags };
    } else if (type >= 0x80000000) {
      const message = data.toString('utf8');
      if (type === NBD_REP_ERR_UNKNOWN) throw new HeadstartError('NBD_EXPORT_UNKNOWN', `no export "${exportName}": ${message}`);
      throw new HeadstartError('NBD_CLIENT_PROTOCOL', `server refused export "${exportName}" (0x${type.toString(16)}): ${message}`);
    }
  }
}

class Client implements NbdClient {
  private readonly pending = new Map<number, Pending>();
  private readonly inflight = new Set<Promise<unknown>>();
  private nextHandle = 1;
  private closing: Promise<void> | null = null;
  readonly readOnly: boolean;

  constructor(
    private readonly socket: Socket,
    private readonly inbox: Inbox,
    readonly exportName: string,
    readonly size: number,
    readonly flags: number,
  ) {
    this.readOnly = (flags & NBD_FLAG_READ_ONLY) !== 0;
    socket.removeAllListeners('data');
    socket.on('data', (c: Buffer) => {
      this.inbox.push(c);
      this.drainReplies();
    });
    socket.on('close', () => {
      const err = new HeadstartError('NBD_CLIENT_PROTOCOL', 'NBD connection closed with requests in flight');
      for (const p of this.pending.values()) p.reject(err);
      this.pending.clear();
    });
    this.drainReplies();
  }

  read(offset: number, length: number): Promise<Buffer> {
    return this.request(NBD_CMD_READ, 0, offset, length, null) as Promise<Buffer>;
  }

  async write(offset: number, data: Uint8Array, options?: { fua?: boolean }): Promise<void> {
    await this.request(NBD_CMD_WRITE, options?.fua ? NBD_CMD_FLAG_FUA : 0, offset, data.length, data);
  }

  async writeZeroes(offset: number, length: number, options?: { fua?: boolean }): Promise<void> {
    await this.request(NBD_CMD_WRITE_ZEROES, options?.fua ? NBD_CMD_FLAG_FUA : 0, offset, length, null);
  }

  async trim(offset: number, length: number, options?: { fua?: boolean }): Promise<void> {
    await this.request(NBD_CMD_TRIM, options?.fua ? NBD_CMD_FLAG_FUA : 0, offset, length, null);
  }

  async flush(): Promise<void> {
    await this.request(NBD_CMD_FLUSH, 0, 0, 0, null);
  }

  close(): Promise<void> {
    this.closing ??= (async () => {
      await Promise.allSettled([...this.inflight]);
      if (!this.socket.destroyed) {
        this.socket.write(header(NBD_CMD_DISC, 0, 0, 0, 0));
        this.socket.end();
        await new Promise<void>((r) => (this.socket.closed ? r() : this.socket.once('close', () => r())));
      }
    })();
    return this.closing;
  }

  private request(type: number, flags: number, offset: number, length: number, data: Uint8Array | null): Promise<Buffer | undefined> {
    if (this.closing || this.socket.destroyed) return Promise.reject(new HeadstartError('NBD_CLIENT_PROTOCOL', 'NBD client is closed'));
    const handle = this.nextHandle;
    this.nextHandle = (this.nextHandle % 0xffffffff) + 1;
    const p = new Promise<Buffer | undefined>((resolve, reject) => {
      this.pending.set(handle, { isRead: type === NBD_CMD_READ, readLength: type === NBD_CMD_READ ? length : 0, resolve, reject });
      this.socket.write(header(type, flags, handle, offset, length));
      if (data && data.length > 0) this.socket.write(data);
    });
    this.inflight.add(p);
    const forget = () => void this.inflight.delete(p);
    p.then(forget, forget);
    return p;
  }

  /** Reply loop: 16-byte simple reply, then the data of a successful READ. */
  private partial: { handle: number; pending: Pending } | null = null;
  private drainReplies(): void {
    for (;;) {
      if (this.partial) {
        const data = this.inbox.tryTake(this.partial.pending.readLength);
        if (!data) return;
        const { pending } = this.partial;
        this.partial = null;
        pending.resolve(Buffer.from(data)); // own copy: the inbox may hand out views
        continue;
      }
      const head = this.inbox.tryTake(16);
      if (!head) return;
      if (head.readUInt32BE(0) !== SIMPLE_REPLY_MAGIC) {
        this.socket.destroy(new HeadstartError('NBD_CLIENT_PROTOCOL', 'bad reply magic from the NBD server'));
        return;
      }
      const error = head.readUInt32BE(4);
      const handle = head.readUInt32BE(12);
      const pending = this.pending.get(handle);
      if (!pending) {
        this.socket.destroy(new HeadstartError('NBD_CLIENT_PROTOCOL', `reply for unknown handle ${handle}`));
        return;
      }
      this.pending.delete(handle);
      if (error !== 0) pending.reject(new HeadstartError('NBD_CLIENT_REQUEST_FAILED', `NBD server answered errno ${error}`, { details: { errno: error } }));
      else if (pending.readLength > 0) this.partial = { handle, pending };
      else pending.resolve(pending.isRead ? Buffer.alloc(0) : undefined);
    }
  }
}

function header(type: number, flags: number, handle: number, offset: number, length: number): Buffer {
  const b = Buffer.allocUnsafe(REQUEST_HEADER_SIZE);
  b.writeUInt32BE(REQUEST_MAGIC, 0);
  b.writeUInt16BE(flags, 4);
  b.writeUInt16BE(type, 6);
  b.writeUInt32BE(0, 8);
  b.writeUInt32BE(handle, 12);
  b.writeUInt32BE(Math.floor(offset / 4294967296), 16);
  b.writeUInt32BE(offset >>> 0, 20);
  b.writeUInt32BE(length, 24);
  return b;
}
