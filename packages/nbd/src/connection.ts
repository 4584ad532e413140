/**
 * DEV DOCS — one client connection.
 *
 * Roles: the parser (parser.ts) turns bytes into client flags, options and requests; this
 * class answers them, talks to the export's BlockDevice and writes replies (wire.ts).
 *
 * Flow: greeting -> client flags -> options (LIST, INFO, STRUCTURED_REPLY,
 * SET_META_CONTEXT, ... until GO or EXPORT_NAME) -> transmission. In transmission every
 * request is started at once (the client pipelines; replies go back in completion order,
 * matched by handle) and answered only when the device call resolves, so a WRITE is
 * acknowledged only once the volume has it and its write-log entry. FUA is passed down; FLUSH calls device.flush().
 *
 * Metadata: the one context we offer is `base:allocation`, and BLOCK_STATUS always answers
 * "allocated, contents unknown" (status 0) for the range asked about. The spec allows that
 * answer for any block; a BlockDevice does not tell us which blocks were never written or
 * were trimmed, and reporting a hole or zeroes we are not sure of would let a client
 * (nbdcopy, qemu-img convert) skip data it must copy.
 *
 * Backpressure: write payloads and pending read lengths count as bytes in flight; above
 * `maxInflightBytes` or `maxInflightRequests`, or while the socket holds more than
 * SOCKET_HIGH_WATER of unsent replies, the socket is paused, so a fast writer (or a client
 * that stops reading replies) cannot grow our memory without bound.
 *
 * Failure: a protocol violation, a timeout or a client vanishing ends this connection only
 * (logged with the reason); requests already handed to the device complete normally, so
 * the device never sees a half-done request from us.
 */
import type { Socket } from 'node:net';
import { HeadstartError, isHeadstartError } from '@headstart/errors';
import {
  BASE_ALLOCATION,
  BASE_NAMESPACE,
  KNOWN_CLIENT_FLAGS,
  NBD_CMD_BLOCK_STATUS,
  NBD_CMD_DISC,
  NBD_CMD_FLAG_FUA,
  NBD_CMD_FLAG_NO_HOLE,
  NBD_CMD_FLAG_REQ_ONE,
  NBD_CMD_FLUSH,
  NBD_CMD_READ,
  NBD_CMD_TRIM,
  NBD_CMD_WRITE,
  NBD_CMD_WRITE_ZEROES,
  NBD_EINVAL,
  NBD_EIO,
  NBD_ENOSPC,
  NBD_EPERM,
  NBD_ESHUTDOWN,
  NBD_FLAG_C_NO_ZEROES,
  NBD_FLAG_CAN_MULTI_CONN,
  NBD_FLAG_HAS_FLAGS,
  NBD_FLAG_READ_ONLY,
  NBD_FLAG_SEND_FLUSH,
  NBD_FLAG_SEND_FUA,
  NBD_FLAG_SEND_TRIM,
  NBD_FLAG_SEND_WRITE_ZEROES,
  NBD_INFO_BLOCK_SIZE,
  NBD_INFO_DESCRIPTION,
  NBD_INFO_NAME,
  NBD_OPT_ABORT,
  NBD_OPT_EXPORT_NAME,
  NBD_OPT_GO,
  NBD_OPT_INFO,
  NBD_OPT_LIST,
  NBD_OPT_LIST_META_CONTEXT,
  NBD_OPT_SET_META_CONTEXT,
  NBD_OPT_STRUCTURED_REPLY,
  NBD_REP_ACK,
  NBD_REP_ERR_INVALID,
  NBD_REP_ERR_SHUTDOWN,
  NBD_REP_ERR_TOO_BIG,
  NBD_REP_ERR_UNKNOWN,
  NBD_REP_ERR_UNSUP,
  NBD_REP_INFO,
  NBD_REP_META_CONTEXT,
  NBD_REP_SERVER,
  REQUEST_HEADER_SIZE,
  SOCKET_HIGH_WATER,
} from './constants';
import { isReadOnly, type ExportEntry, type ExportRegistry } from './exports';
import { NbdParser, type NbdRequest, type ParserSink } from './parser';
import type { NbdLogger } from './types';
import {
  BLOCK_STATUS_CHUNK_SIZE,
  encodeErrorChunk,
  encodeExportNameReply,
  encodeGreeting,
  encodeInfoBlockSize,
  encodeInfoExport,
  encodeInfoText,
  encodeMetaContext,
  encodeOptionReply,
  encodeServerEntry,
  encodeSimpleReply,
  READ_CHUNK_HEADER_SIZE,
  writeBlockStatusChunk,
  writeReadChunkHeader,
  writeSimpleReply,
} from './wire';
import type { PayloadPool } from './payload-pool';
import { RECV_BUFFER_SIZE, useRecvBuffer } from './recv-buffer';

export interface ConnectionContext {
  readonly registry: ExportRegistry;
  readonly logger: NbdLogger;
  readonly defaultExport: string | undefined;
  readonly maxRequest: number;
  readonly maxInflightBytes: number;
  readonly maxInflightRequests: number;
  readonly handshakeTimeoutMs: number;
  readonly drainTimeoutMs: number;
  readonly now: () => number;
  /** Recycles assembled WRITE payloads once the device has them (payload-pool.ts). */
  readonly payloads: PayloadPool;
  readonly reuseReceiveBuffer: boolean;
  /** True once the server is stopping: options get NBD_REP_ERR_SHUTDOWN. */
  stopping(): boolean;
}

const enum Phase {
  Handshake,
  Transmission,
  /** No new requests (DISC, removeExport, stop); ending once in-flight requests are answered. */
  Draining,
  Closed,
}

const FUA = { fua: true } as const;
/**
 * Reply headers of one tick are written side by side into a slab and leave as one buffer
 * (one socket.write instead of one per reply: the per-write cost of a Node stream is
 * what a 4 KiB random-write load is made of). A slab handed to the socket is never
 * written again; a new one replaces it when full.
 */
const SLAB_SIZE = 64 * 1024;
/** Payload tails at least this long are read straight into the payload buffer. */
const DIRECT_READ_MIN = 64 * 1024;
/** Flags a request may carry: FUA on anything (harmless on reads), NO_HOLE on WRITE_ZEROES. */
const ALLOWED_FLAGS = NBD_CMD_FLAG_FUA;
const ALLOWED_ZERO_FLAGS = NBD_CMD_FLAG_FUA | NBD_CMD_FLAG_NO_HOLE;
const ALLOWED_STATUS_FLAGS = NBD_CMD_FLAG_FUA | NBD_CMD_FLAG_REQ_ONE;
/**
 * The id of base:allocation in NBD_REP_META_CONTEXT replies to SET and in block status
 * chunks. Opaque to the client (the spec lets it change between SETs); not 0, the value a
 * LIST reply carries, so a mix-up is visible in a trace.
 */
const BASE_ALLOCATION_ID = 1;

let nextId = 1;

function uncork(conn: NbdConnection): void {
  conn.flushReplies();
}

export class NbdConnection implements ParserSink {
  readonly id = nextId++;
  readonly closed: Promise<void>;
  private phase = Phase.Handshake;
  private readonly parser: NbdParser;
  private entry: ExportEntry | null = null;
  private structured = false;
  /**
   * The export (by its resolved name) for which the last NBD_OPT_SET_META_CONTEXT
   * selected base:allocation; null if it selected nothing or failed.
   */
  private metaExport: string | null = null;
  /** base:allocation is selected for the export in transmission: BLOCK_STATUS is allowed. */
  private blockStatus = false;
  private noZeroes = false;
  private inflightRequests = 0;
  private inflightBytes = 0;
  private paused = false;
  private corked = false;
  private slab = Buffer.allocUnsafe(SLAB_SIZE);
  /** slab[slabStart, slabEnd) holds replies not yet handed to the socket. */
  private slabStart = 0;
  private slabEnd = 0;
  private timer: NodeJS.Timeout | null = null;
  /** The payload view the socket reads into next, if any (see recv-buffer.ts). */
  private target: Buffer | null = null;
  /** True while the client's requests are large WRITEs (payloads read straight into place). */
  private largeWrites = false;
  /** The start of the receive buffer, one request header long. */
  private headerView: Buffer | null = null;
  private readonly remote: string;
  private resolveClosed!: () => void;

  constructor(
    private readonly socket: Socket,
    private readonly ctx: ConnectionContext,
  ) {
    this.remote = `${socket.remoteAddress}:${socket.remotePort}`;
    this.closed = new Promise((resolve) => (this.resolveClosed = resolve));
    this.parser = new NbdParser(this, { maxRequest: ctx.maxRequest, allocate: (n) => ctx.payloads.acquire(n) });
    socket.setNoDelay(true);
    // Large WRITEs arrive much cheaper through one reused receive buffer (recv-buffer.ts).
    const reused =
      ctx.reuseReceiveBuffer &&
      useRecvBuffer(
        socket,
        RECV_BUFFER_SIZE,
        (n, buf) => (buf === this.target ? this.onDirect(n) : this.onData(buf.subarray(0, n), true)),
        (recv) => {
          this.target = this.parser.payloadTarget(DIRECT_READ_MIN);
          if (this.target !== null || !this.largeWrites) return this.target;
          // After a large WRITE the next one usually follows: read just its header, so its
          // payload lands in its own buffer rather than being copied out of ours.
          return (this.headerView ??= recv.subarray(0, REQUEST_HEADER_SIZE));
        },
      );
    if (!reused) socket.on('data', (chunk: Buffer) => this.onData(chunk, false));
    socket.on('end', () => this.onEnd());
    socket.on('drain', () => this.updateFlow());
    socket.on('error', (err: NodeJS.ErrnoException) => this.log('info', { err: err.code ?? err.message }, 'socket error'));
    socket.on('close', () => this.onClose());
    this.timer = setTimeout(() => this.drop('handshake not finished in time'), ctx.handshakeTimeoutMs);
    this.timer.unref();
    socket.write(encodeGreeting());
  }

  /** Stop taking requests, answer those in flight, then disconnect (bounded by the drain timeout). */
  shutdown(reason: string): Promise<void> {
    if (this.phase === Phase.Handshake) {
      this.drop(reason, 'info');
    } else if (this.phase !== Phase.Closed) {
      if (this.phase === Phase.Transmission) this.log('info', { reason }, 'disconnecting client');
      this.phase = Phase.Draining;
      // A device call that never returns must not hold stop() or removeExport() forever.
      const t = setTimeout(() => this.drop(`${reason}: in-flight requests did not finish in time`, 'warn'), this.ctx.drainTimeoutMs);
      t.unref();
      void this.closed.then(() => clearTimeout(t));
      this.endWhenIdle();
    }
    return this.closed;
  }

  /** Bytes the socket read straight into the payload being assembled (recv-buffer.ts). */
  private onDirect(n: number): void {
    try {
      this.parser.payloadReceived(n);
    } catch (err) {
      this.log('error', { err: String((err as Error)?.stack ?? err) }, 'internal error while handling input');
      this.drop('internal error', 'error');
    }
  }

  /** Socket input goes to the parser; a bug or a throwing recorder ends this connection only. */
  private onData(chunk: Buffer, transient: boolean): void {
    try {
      this.parser.push(chunk, transient);
    } catch (err) {
      this.log('error', { err: String((err as Error)?.stack ?? err) }, 'internal error while handling input');
      this.drop('internal error', 'error');
    }
  }

  // --- parser events: handshake ---

  clientFlags(flags: number): void {
    if ((flags & ~KNOWN_CLIENT_FLAGS) !== 0) {
      return this.protocolError(new HeadstartError('NBD_BAD_HANDSHAKE', `unknown client flags 0x${flags.toString(16)}`));
    }
    this.noZeroes = (flags & NBD_FLAG_C_NO_ZEROES) !== 0;
  }

  option(option: number, data: Buffer): void {
    if (this.ctx.stopping() && option !== NBD_OPT_ABORT) {
      if (option === NBD_OPT_EXPORT_NAME) return this.drop('server is shutting down', 'info');
      return this.optionReply(option, NBD_REP_ERR_SHUTDOWN, 'server is shutting down');
    }
    switch (option) {
      case NBD_OPT_EXPORT_NAME:
        return this.optExportName(data);
      case NBD_OPT_ABORT:
        this.parser.stop();
        this.optionReply(option, NBD_REP_ACK);
        this.phase = Phase.Draining;
        this.endWhenIdle();
        return;
      case NBD_OPT_LIST:
        if (data.length !== 0) return this.optionReply(option, NBD_REP_ERR_INVALID, 'NBD_OPT_LIST takes no data');
        for (const e of this.ctx.registry.all()) this.send(encodeOptionReply(option, NBD_REP_SERVER, encodeServerEntry(e.name, e.description)));
        return this.optionReply(option, NBD_REP_ACK);
      case NBD_OPT_STRUCTURED_REPLY:
        if (data.length !== 0) return this.optionReply(option, NBD_REP_ERR_INVALID, 'NBD_OPT_STRUCTURED_REPLY takes no data');
        this.structured = true;
        return this.optionReply(option, NBD_REP_ACK);
      case NBD_OPT_INFO:
      case NBD_OPT_GO:
        return this.optInfoGo(option, data);
      case NBD_OPT_LIST_META_CONTEXT:
      case NBD_OPT_SET_META_CONTEXT:
        return this.optMetaContext(option, data);
      default:
        // STARTTLS, extended headers and anything newer: not offered (spec: NBD_REP_ERR_UNSUP).
        return this.optionReply(option, NBD_REP_ERR_UNSUP, `option ${option} is not supported`);
    }
  }

  optionTooBig(option: number, length: number): void {
    if (option === NBD_OPT_EXPORT_NAME) return this.protocolError(new HeadstartError('NBD_BAD_HANDSHAKE', `NBD_OPT_EXPORT_NAME with ${length} bytes of data`));
    this.optionReply(option, NBD_REP_ERR_TOO_BIG, `option data of ${length} bytes is too long`);
  }

  protocolError(error: HeadstartError): void {
    this.drop(`${error.code}: ${error.message}`, 'warn');
  }

  private optExportName(data: Buffer): void {
    const entry = this.lookup(data.toString('utf8'));
    // The spec gives EXPORT_NAME no way to say no: an unknown name ends the session.
    if (!entry) return this.drop(`NBD_EXPORT_UNKNOWN: no export "${data.toString('utf8')}"`, 'warn');
    this.send(encodeExportNameReply(entry.device.size, this.transmissionFlags(entry), this.noZeroes));
    this.enterTransmission(entry);
  }

  private optInfoGo(option: number, data: Buffer): void {
    // Data: u32 name length, name, u16 count of info requests, u16 each.
    if (data.length < 6) return this.optionReply(option, NBD_REP_ERR_INVALID, 'option data too short');
    const nameLength = data.readUInt32BE(0);
    if (nameLength > data.length - 6) return this.optionReply(option, NBD_REP_ERR_INVALID, 'export name length exceeds option data');
    const count = data.readUInt16BE(4 + nameLength);
    if (data.length !== 6 + nameLength + 2 * count) return this.optionReply(option, NBD_REP_ERR_INVALID, 'info request count does not match option length');
    const name = data.toString('utf8', 4, 4 + nameLength);
    const entry = this.lookup(name);
    if (!entry) return this.optionReply(option, NBD_REP_ERR_UNKNOWN, `no export named "${name}"`);
    const wanted = new Set<number>();
    for (let i = 0; i < count; i++) wanted.add(data.readUInt16BE(6 + nameLength + 2 * i));
    this.send(encodeOptionReply(option, NBD_REP_INFO, encodeInfoExport(entry.device.size, this.transmissionFlags(entry))));
    if (wanted.has(NBD_INFO_NAME)) this.send(encodeOptionReply(option, NBD_REP_INFO, encodeInfoText(NBD_INFO_NAME, entry.name)));
    if (wanted.has(NBD_INFO_DESCRIPTION) && entry.description) this.send(encodeOptionReply(option, NBD_REP_INFO, encodeInfoText(NBD_INFO_DESCRIPTION, entry.description)));
    if (wanted.has(NBD_INFO_BLOCK_SIZE)) {
      // Any byte offset and length works (the device does read-modify-write); the block
      // size is what avoids that work.
      const preferred = Math.min(entry.device.blockSize, this.ctx.maxRequest);
      this.send(encodeOptionReply(option, NBD_REP_INFO, encodeInfoBlockSize(1, preferred, this.ctx.maxRequest)));
    }
    this.optionReply(option, NBD_REP_ACK);
    if (option === NBD_OPT_GO) this.enterTransmission(entry);
  }

  /**
   * NBD_OPT_LIST_META_CONTEXT and NBD_OPT_SET_META_CONTEXT. We know one context,
   * base:allocation. LIST answers it for no query (list everything), for "base:" (the
   * namespace's wildcard, which the spec requires us to support) and for "base:allocation";
   * SET selects it only when named in full ("base:" selects nothing there, by the spec).
   * Any other query, of any namespace, matches nothing and is not an error: the spec says
   * unknown contexts are ignored, not refused. Matches are followed by NBD_REP_ACK.
   */
  private optMetaContext(option: number, data: Buffer): void {
    const set = option === NBD_OPT_SET_META_CONTEXT;
    // SET replaces the previous selection, even when it fails (spec).
    if (set) this.metaExport = null;
    // Block status can only be answered in a structured reply, so a context selected
    // without one could never be used: the spec says a server SHOULD refuse SET with
    // NBD_REP_ERR_INVALID then. For LIST it only MAY; LIST selects nothing, so we answer
    // it either way, as qemu-nbd and nbdkit do.
    if (set && !this.structured) return this.optionReply(option, NBD_REP_ERR_INVALID, 'NBD_OPT_SET_META_CONTEXT needs structured replies (NBD_OPT_STRUCTURED_REPLY) first');
    const parsed = parseMetaContextData(data);
    if (typeof parsed === 'string') return this.optionReply(option, NBD_REP_ERR_INVALID, parsed);
    // Contexts are per export; one we do not serve has none (qemu-nbd answers the same).
    const entry = this.lookup(parsed.name);
    if (!entry) return this.optionReply(option, NBD_REP_ERR_UNKNOWN, `no export named "${parsed.name}"`);
    const { queries } = parsed;
    const match = set ? queries.includes(BASE_ALLOCATION) : queries.length === 0 || queries.some((q) => q === BASE_ALLOCATION || q === BASE_NAMESPACE);
    if (match) this.send(encodeOptionReply(option, NBD_REP_META_CONTEXT, encodeMetaContext(set ? BASE_ALLOCATION_ID : 0, BASE_ALLOCATION)));
    if (set && match) this.metaExport = entry.name;
    this.optionReply(option, NBD_REP_ACK);
  }

  private lookup(name: string): ExportEntry | undefined {
    const wanted = name === '' && this.ctx.defaultExport !== undefined ? this.ctx.defaultExport : name;
    const entry = this.ctx.registry.get(wanted);
    return entry && !entry.removed ? entry : undefined;
  }

  private transmissionFlags(entry: ExportEntry): number {
    let flags = NBD_FLAG_HAS_FLAGS | NBD_FLAG_SEND_FLUSH;
    if (isReadOnly(entry)) flags |= NBD_FLAG_READ_ONLY;
    else flags |= NBD_FLAG_SEND_FUA | NBD_FLAG_SEND_TRIM | NBD_FLAG_SEND_WRITE_ZEROES;
    if (entry.multiConn) flags |= NBD_FLAG_CAN_MULTI_CONN;
    return flags;
  }

  private enterTransmission(entry: ExportEntry): void {
    this.entry = entry;
    entry.connections.add(this);
    // Contexts hold only if the last SET named the export the client now enters (spec).
    this.blockStatus = this.structured && this.metaExport === entry.name;
    this.phase = Phase.Transmission;
    this.parser.startTransmission();
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    this.log('info', { export: entry.name, structured: this.structured, blockStatus: this.blockStatus }, 'client attached');
  }

  private optionReply(option: number, type: number, message?: string): void {
    this.send(encodeOptionReply(option, type, message === undefined ? undefined : Buffer.from(message, 'utf8')));
  }

  // --- parser events: transmission ---

  request(req: NbdRequest): void {
    this.largeWrites = req.type === NBD_CMD_WRITE && req.length >= DIRECT_READ_MIN;
    if (this.phase !== Phase.Transmission) {
      // Draining after removeExport/stop: the spec asks for ESHUTDOWN on further requests.
      if (this.phase === Phase.Draining && req.type !== NBD_CMD_DISC) this.replyError(req, NBD_ESHUTDOWN, 'export is shutting down');
      return;
    }
    const entry = this.entry!;
    const device = entry.device;
    switch (req.type) {
      case NBD_CMD_READ: {
        if ((req.flags & ~ALLOWED_FLAGS) !== 0) return this.replyError(req, NBD_EINVAL, 'unsupported command flags');
        if (req.length > this.ctx.maxRequest) return this.replyError(req, NBD_EINVAL, `read of ${req.length} bytes exceeds the maximum block size`);
        if (req.offset + req.length > device.size) return this.replyError(req, NBD_EINVAL, 'read beyond the end of the export');
        // Zero-length requests get EINVAL, as nbdkit answers them: a structured reply has no
        // valid way to carry 0 bytes (libnbd treats an empty data chunk as out of bounds and
        // kills the handle), and simple and structured connections must answer alike.
        if (req.length === 0) return this.replyError(req, NBD_EINVAL, 'zero-length read');
        this.begin(req.length);
        if (device.readInto !== undefined) return this.readPooled(req, device.readInto.bind(device));
        let p: Promise<Buffer>;
        try {
          p = device.read(req.offset, req.length);
        } catch (err) {
          p = Promise.reject(err);
        }
        p.then(
          (data) => {
            // Reply before end(): end() may close a draining connection.
            if (data.length !== req.length) this.replyDeviceError(req, new Error(`device returned ${data.length} of ${req.length} bytes`));
            else this.replyRead(req, data);
            this.end(req.length);
          },
          (err) => {
            this.replyDeviceError(req, err);
            this.end(req.length);
          },
        );
        return;
      }
      case NBD_CMD_WRITE:
      case NBD_CMD_WRITE_ZEROES:
      case NBD_CMD_TRIM: {
        const allowed = req.type === NBD_CMD_WRITE_ZEROES ? ALLOWED_ZERO_FLAGS : ALLOWED_FLAGS;
        if ((req.flags & ~allowed) !== 0) return this.replyError(req, NBD_EINVAL, 'unsupported command flags');
        if (isReadOnly(entry)) return this.replyError(req, NBD_EPERM, 'export is read-only');
        // The spec: ENOSPC for a write or write-zeroes past the end (a file system there sees
        // a full device, not a bad argument), EINVAL for a trim.
        if (req.offset + req.length > device.size) {
          const what = req.type === NBD_CMD_WRITE ? 'write' : req.type === NBD_CMD_TRIM ? 'trim' : 'write-zeroes';
          return this.replyError(req, req.type === NBD_CMD_TRIM ? NBD_EINVAL : NBD_ENOSPC, `${what} beyond the end of the export`);
        }
        // As nbdkit does (see READ). A zero-length WRITE carries no payload: the parser
        // already handed it over without reading any.
        if (req.length === 0) return this.replyError(req, NBD_EINVAL, `zero-length ${req.type === NBD_CMD_WRITE ? 'write' : req.type === NBD_CMD_TRIM ? 'trim' : 'write-zeroes'}`);
        const op = req.type === NBD_CMD_WRITE ? 'write' : req.type === NBD_CMD_TRIM ? 'trim' : 'zero';
        if (entry.recorder) entry.recorder.record(op, req.offset, req.length, this.ctx.now());
        const options = (req.flags & NBD_CMD_FLAG_FUA) !== 0 ? FUA : undefined;
        // Only a WRITE holds payload memory while it is in flight.
        const bytes = req.type === NBD_CMD_WRITE ? req.length : 0;
        this.begin(bytes);
        let p: Promise<void>;
        try {
          p = op === 'write' ? device.write(req.offset, req.data!, options) : op === 'trim' ? device.trim(req.offset, req.length, options) : device.writeZeroes(req.offset, req.length, options);
        } catch (err) {
          p = Promise.reject(err);
        }
        this.settle(req, p, bytes);
        return;
      }
      case NBD_CMD_FLUSH: {
        this.begin(0);
        let p: Promise<void>;
        try {
          p = device.flush();
        } catch (err) {
          p = Promise.reject(err);
        }
        this.settle(req, p, 0);
        return;
      }
      case NBD_CMD_BLOCK_STATUS: {
        if ((req.flags & ~ALLOWED_STATUS_FLAGS) !== 0) return this.replyError(req, NBD_EINVAL, 'unsupported command flags');
        // The spec: SHOULD be EINVAL without a selected context. (Selecting one needs
        // structured replies, so the error chunk below is always allowed where a success
        // would have been.)
        if (!this.blockStatus) return this.replyError(req, NBD_EINVAL, 'no metadata context selected (NBD_OPT_SET_META_CONTEXT base:allocation)');
        if (req.offset + req.length > device.size) return this.replyError(req, NBD_EINVAL, 'block status beyond the end of the export');
        // The spec leaves a zero-length query unspecified; EINVAL like the other commands
        // (and no descriptor could describe it: extents are never empty).
        if (req.length === 0) return this.replyError(req, NBD_EINVAL, 'zero-length block status');
        // One extent, exactly the requested range, status 0 ("allocated, contents unknown",
        // which the spec says a server may always report; see the header). It starts at the
        // offset, ends inside the export, and is no longer than the request, so it also
        // satisfies NBD_CMD_FLAG_REQ_ONE. (Without REQ_ONE the spec would let it run on to
        // the end of the export; nbdinfo, qemu-img and nbdcopy ask for whole ranges, so that
        // would save them nothing.) No device call: answered at once.
        const at = this.reserve(BLOCK_STATUS_CHUNK_SIZE);
        writeBlockStatusChunk(this.slab, at, req.handleHi, req.handleLo, BASE_ALLOCATION_ID, req.length, 0);
        return;
      }
      case NBD_CMD_DISC:
        // Soft disconnect: answer what is in flight, then close.
        this.parser.stop();
        this.phase = Phase.Draining;
        this.log('info', {}, 'client disconnected (NBD_CMD_DISC)');
        this.endWhenIdle();
        return;
      default:
        return this.replyError(req, NBD_EINVAL, `unknown command ${req.type}`);
    }
  }

  /**
   * A READ into a recycled payload buffer (payload-pool.ts): a new 1 MiB buffer per read
   * costs 256 page faults on first touch plus garbage collection, more than the copy of the
   * data itself. The buffer goes back to the pool once the socket has handed it to the kernel.
   */
  private readPooled(req: NbdRequest, readInto: (offset: number, target: Uint8Array) => Promise<void>): void {
    const buf = this.ctx.payloads.acquire(req.length);
    let p: Promise<void>;
    try {
      p = readInto(req.offset, buf);
    } catch (err) {
      p = Promise.reject(err);
    }
    p.then(
      () => {
        this.replyRead(req, buf, this.releaseSent);
        this.end(req.length);
      },
      (err) => {
        // Not recycled: the device may have failed half-way through filling it.
        this.replyDeviceError(req, err);
        this.end(req.length);
      },
    );
  }

  /** socket.write callback for a pooled buffer: once written, it may be reused. */
  private readonly releaseSent = (buf: Buffer) => (err?: Error | null) => {
    if (!err) this.ctx.payloads.release(buf);
  };

  private settle(req: NbdRequest, p: Promise<void>, bytes: number): void {
    p.then(
      () => {
        this.replyOk(req);
        this.end(bytes);
        if (req.ownsData) this.ctx.payloads.release(req.data!);
      },
      (err) => {
        this.replyDeviceError(req, err);
        this.end(bytes);
        if (req.ownsData) this.ctx.payloads.release(req.data!);
      },
    );
  }

  private begin(bytes: number): void {
    this.inflightRequests++;
    this.inflightBytes += bytes;
    if (!this.paused && (this.inflightBytes > this.ctx.maxInflightBytes || this.inflightRequests >= this.ctx.maxInflightRequests)) this.updateFlow();
  }

  private end(bytes: number): void {
    this.inflightRequests--;
    this.inflightBytes -= bytes;
    if (this.paused) this.updateFlow();
    if (this.phase === Phase.Draining) this.endWhenIdle();
  }

  /** Pause reading while too much is in flight or unsent; resume once it has gone down. */
  private updateFlow(): void {
    if (this.phase === Phase.Closed) return;
    const busy =
      this.inflightBytes > this.ctx.maxInflightBytes || this.inflightRequests >= this.ctx.maxInflightRequests || this.socket.writableLength > SOCKET_HIGH_WATER;
    if (busy && !this.paused) {
      this.paused = true;
      this.socket.pause();
    } else if (!busy && this.paused) {
      this.paused = false;
      this.socket.resume();
    }
  }

  // --- replies ---

  private replyOk(req: NbdRequest): void {
    const at = this.reserve(16);
    writeSimpleReply(this.slab, at, 0, req.handleHi, req.handleLo);
  }

  private replyRead(req: NbdRequest, data: Buffer, recycle?: (buf: Buffer) => (err?: Error | null) => void): void {
    if (this.structured) {
      const at = this.reserve(READ_CHUNK_HEADER_SIZE);
      writeReadChunkHeader(this.slab, at, req.handleHi, req.handleLo, req.offset, data.length);
    } else {
      const at = this.reserve(16);
      writeSimpleReply(this.slab, at, 0, req.handleHi, req.handleLo);
    }
    if (data.length > 0) this.send(data, recycle?.(data));
  }

  private replyError(req: NbdRequest, errno: number, message: string): void {
    // With structured replies a READ must not get a simple reply; an error chunk also
    // carries the message for the human at the client.
    if (this.structured) this.send(encodeErrorChunk(req.handleHi, req.handleLo, errno, message));
    else this.send(encodeSimpleReply(errno, req.handleHi, req.handleLo));
  }

  private replyDeviceError(req: NbdRequest, err: unknown): void {
    if (isHeadstartError(err)) {
      if (err.nbdErrno === NBD_EIO) this.log('error', { code: err.code, type: req.type, offset: req.offset, length: req.length }, err.message);
      return this.replyError(req, err.nbdErrno, err.describe());
    }
    this.log('error', { err: String((err as Error)?.stack ?? err), type: req.type, offset: req.offset, length: req.length }, 'device request failed');
    this.replyError(req, NBD_EIO, 'I/O error');
  }

  /** Room for `n` bytes of reply in this.slab; returns where they start. */
  private reserve(n: number): number {
    if (this.slabEnd + n > SLAB_SIZE) {
      this.pushSlab();
      this.slab = Buffer.allocUnsafe(SLAB_SIZE);
      this.slabStart = this.slabEnd = 0;
    }
    const at = this.slabEnd;
    this.slabEnd += n;
    this.schedule();
    return at;
  }

  /** Queue a buffer for the client, after every reply reserved before it. */
  private send(buf: Buffer, written?: (err?: Error | null) => void): void {
    this.pushSlab();
    if (!this.writable()) return;
    this.schedule();
    this.socket.write(buf, written);
    if (!this.paused && this.socket.writableLength > SOCKET_HIGH_WATER) this.updateFlow();
  }

  private writable(): boolean {
    return this.phase !== Phase.Closed && !this.socket.destroyed && !this.socket.writableEnded;
  }

  /** Hands the slab's pending replies to the socket as one buffer. */
  private pushSlab(): void {
    if (this.slabEnd === this.slabStart) return;
    const part = this.slab.subarray(this.slabStart, this.slabEnd);
    this.slabStart = this.slabEnd;
    if (this.writable()) this.socket.write(part);
  }

  /** Replies of one tick leave together: cork now, flush and uncork on the next tick. */
  private schedule(): void {
    if (this.corked) return;
    this.corked = true;
    this.socket.cork();
    process.nextTick(uncork, this);
  }

  flushReplies(): void {
    if (!this.corked) return;
    this.pushSlab();
    this.corked = false;
    this.socket.uncork();
    if (!this.paused && this.socket.writableLength > SOCKET_HIGH_WATER) this.updateFlow();
  }

  // --- ending ---

  private endWhenIdle(): void {
    if (this.inflightRequests > 0 || this.phase === Phase.Closed || this.socket.writableEnded) return;
    this.flushReplies();
    this.socket.end(() => this.socket.destroy());
  }

  private onEnd(): void {
    if (this.phase === Phase.Handshake) return this.drop('client hung up during the handshake', 'info');
    if (this.phase === Phase.Transmission) {
      if (this.parser.midMessage) this.log('warn', { inflight: this.inflightRequests }, 'client disconnected in the middle of a request');
      else this.log('info', { inflight: this.inflightRequests }, 'client closed the connection without NBD_CMD_DISC');
      this.parser.stop();
      this.phase = Phase.Draining;
    }
    this.endWhenIdle();
  }

  /** Hard disconnect, with the reason in the log. */
  private drop(reason: string, level: 'info' | 'warn' | 'error' = 'warn'): void {
    if (this.phase === Phase.Closed) return;
    this.log(level, { reason }, 'closing connection');
    this.parser.stop();
    this.socket.destroy();
  }

  private onClose(): void {
    if (this.phase === Phase.Closed) return;
    if (this.phase === Phase.Transmission && this.parser.midMessage) this.log('warn', { inflight: this.inflightRequests }, 'client vanished in the middle of a request');
    this.phase = Phase.Closed;
    this.parser.stop();
    if (this.timer) clearTimeout(this.timer);
    this.entry?.connections.delete(this);
    this.resolveClosed();
  }

  private log(level: 'info' | 'warn' | 'error', fields: object, msg: string): void {
    this.ctx.logger[level]({ conn: this.id, remote: this.remote, export: this.entry?.name, ...fields }, msg);
  }
}

/**
 * The data of NBD_OPT_LIST_META_CONTEXT / NBD_OPT_SET_META_CONTEXT: u32 export name
 * length, name, u32 query count, then per query u32 length and the query. Returns the
 * reason if it does not add up exactly (the spec: NBD_REP_ERR_INVALID).
 */
function parseMetaContextData(data: Buffer): { name: string; queries: string[] } | string {
  if (data.length < 8) return 'option data too short';
  const nameLength = data.readUInt32BE(0);
  if (nameLength > data.length - 8) return 'export name length exceeds option data';
  const name = data.toString('utf8', 4, 4 + nameLength);
  const count = data.readUInt32BE(4 + nameLength);
  const queries: string[] = [];
  let at = 8 + nameLength;
  for (let i = 0; i < count; i++) {
    if (data.length - at < 4) return 'query count exceeds option data';
    const length = data.readUInt32BE(at);
    if (length > data.length - at - 4) return 'query length exceeds option data';
    queries.push(data.toString('utf8', at + 4, at + 4 + length));
    at += 4 + length;
  }
  if (at !== data.length) return 'option data longer than its queries';
  return { name, queries };
}
