/**
 * DEV DOCS — the NBD input parser.
 *
 * A state machine over the bytes a client sends; it never touches a socket, so tests feed
 * it any chunking and any garbage. Phases, in the order the spec has them:
 *
 *   client flags (4 bytes) -> options (16-byte header + data)* -> requests (28-byte header
 *   [+ payload for NBD_CMD_WRITE])*
 *
 * The connection decides when option haggling ends (after NBD_OPT_GO's ACK or
 * NBD_OPT_EXPORT_NAME) and calls `startTransmission()` from inside its `option` callback,
 * before the parser looks at the next byte; `stop()` from any callback makes it ignore
 * everything after. Limits are checked from the header, before any payload is buffered:
 * a WRITE longer than `maxRequest` is a protocol error (the connection is dropped), an
 * option longer than `maxOptionData` is skipped unread.
 *
 * Payloads that arrive whole inside one socket chunk are handed on as a view of that
 * chunk (no copy); only payloads split across chunks are assembled into a new buffer.
 */
import { HeadstartError } from '@headstart/errors';
import {
  CLIENT_FLAGS_SIZE,
  DEFAULT_MAX_REQUEST,
  IHAVEOPT,
  MAX_OPTION_DATA,
  NBD_CMD_WRITE,
  OPTION_HEADER_SIZE,
  REQUEST_HEADER_SIZE,
  REQUEST_MAGIC,
} from './constants';

/** One transmission-phase request as the client sent it. */
export interface NbdRequest {
  readonly flags: number;
  readonly type: number;
  /** The 64-bit handle (cookie), kept as two 32-bit halves so replies echo it without BigInt. */
  readonly handleHi: number;
  readonly handleLo: number;
  /** May exceed 2^53 when a client sends nonsense; then it is simply out of range. */
  readonly offset: number;
  readonly length: number;
  /** The payload of NBD_CMD_WRITE, else null. */
  readonly data: Buffer | null;
  /** True if `data` came from `limits.allocate` (assembled across chunks), not a view of one. */
  readonly ownsData: boolean;
}

export interface ParserSink {
  clientFlags(flags: number): void;
  option(option: number, data: Buffer): void;
  /** An option whose data exceeded the limit; its data has been skipped. */
  optionTooBig(option: number, length: number): void;
  request(request: NbdRequest): void;
  /** The input broke the protocol; the parser is stopped. */
  protocolError(error: HeadstartError): void;
}

export interface ParserLimits {
  readonly maxRequest?: number;
  readonly maxOptionData?: number;
  /** Where payloads split across chunks are assembled (default: a new buffer each). */
  readonly allocate?: (length: number) => Buffer;
}

const enum State {
  ClientFlags,
  OptionHeader,
  OptionData,
  OptionSkip,
  RequestHeader,
  RequestData,
  Stopped,
}

const EMPTY = Buffer.alloc(0);
const TWO_32 = 4294967296;

export class NbdParser {
  private state = State.ClientFlags;
  /** Holds a header that arrived split across chunks. */
  private readonly header = Buffer.alloc(REQUEST_HEADER_SIZE);
  private headerFill = 0;
  /** Payload being assembled across chunks (null while none is). */
  private data: Buffer | null = null;
  private dataLength = 0;
  private dataFill = 0;
  private option = 0;
  private skipLeft = 0;
  private pending: { -readonly [K in keyof NbdRequest]: NbdRequest[K] } | null = null;
  private readonly maxRequest: number;
  private readonly maxOptionData: number;
  private readonly allocate: (length: number) => Buffer;

  constructor(
    private readonly sink: ParserSink,
    limits: ParserLimits = {},
  ) {
    this.maxRequest = limits.maxRequest ?? DEFAULT_MAX_REQUEST;
    this.maxOptionData = limits.maxOptionData ?? MAX_OPTION_DATA;
    this.allocate = limits.allocate ?? Buffer.allocUnsafe;
  }

  /** True between a header and the end of its payload (a disconnect now is "mid-request"). */
  get midMessage(): boolean {
    return this.headerFill > 0 || this.state === State.RequestData || this.state === State.OptionData || this.state === State.OptionSkip;
  }

  get stopped(): boolean {
    return this.state === State.Stopped;
  }

  /**
   * If a WRITE payload of which at least `minimum` bytes are still to come is being
   * assembled, the free part of its buffer, for the socket to read into directly; report
   * what landed there with `payloadReceived`. Null otherwise.
   */
  payloadTarget(minimum: number): Buffer | null {
    if (this.state !== State.RequestData || this.dataLength - this.dataFill < minimum) return null;
    if (this.data === null) this.data = this.allocate(this.dataLength);
    return this.data.subarray(this.dataFill);
  }

  /** `n` bytes were read straight into the buffer payloadTarget() returned. */
  payloadReceived(n: number): void {
    if (this.state !== State.RequestData || this.data === null) return;
    this.dataFill += n;
    if (this.dataFill === this.dataLength) {
      const payload = this.data;
      this.data = null;
      this.dataFill = 0;
      this.onPayload(payload, true);
    }
  }

  /** Option haggling is over: from the next byte on, input is requests. */
  startTransmission(): void {
    if (this.state !== State.Stopped) this.state = State.RequestHeader;
  }

  stop(): void {
    this.state = State.Stopped;
    this.data = null;
    this.pending = null;
  }

  /**
   * Feed input. `transient` says the caller reuses `chunk` after this call returns (a
   * receive buffer): payloads are then copied out instead of handed on as views.
   */
  push(chunk: Buffer, transient = false): void {
    let pos = 0;
    const end = chunk.length;
    while (pos < end) {
      switch (this.state) {
        case State.Stopped:
          return;
        case State.ClientFlags:
        case State.OptionHeader:
        case State.RequestHeader: {
          const need = this.state === State.ClientFlags ? CLIENT_FLAGS_SIZE : this.state === State.OptionHeader ? OPTION_HEADER_SIZE : REQUEST_HEADER_SIZE;
          if (this.headerFill === 0 && end - pos >= need) {
            // Fast path: the whole header is in this chunk; decode it in place.
            const at = pos;
            pos += need;
            this.onHeader(chunk, at);
          } else {
            const n = Math.min(need - this.headerFill, end - pos);
            chunk.copy(this.header, this.headerFill, pos, pos + n);
            this.headerFill += n;
            pos += n;
            if (this.headerFill < need) return;
            this.headerFill = 0;
            this.onHeader(this.header, 0);
          }
          break;
        }
        case State.OptionData:
        case State.RequestData: {
          const avail = end - pos;
          if (this.dataFill === 0 && avail >= this.dataLength && !transient) {
            const payload = chunk.subarray(pos, pos + this.dataLength);
            pos += this.dataLength;
            this.onPayload(payload, false);
          } else {
            if (this.data === null) this.data = this.state === State.RequestData ? this.allocate(this.dataLength) : Buffer.allocUnsafe(this.dataLength);
            const n = Math.min(this.dataLength - this.dataFill, avail);
            // TypedArray#set: Buffer#copy's argument handling costs more than a 4 KiB memcpy.
            this.data.set(chunk.subarray(pos, pos + n), this.dataFill);
            this.dataFill += n;
            pos += n;
            if (this.dataFill === this.dataLength) {
              const payload = this.data;
              this.data = null;
              this.dataFill = 0;
              this.onPayload(payload, true);
            }
          }
          break;
        }
        case State.OptionSkip: {
          const n = Math.min(this.skipLeft, end - pos);
          this.skipLeft -= n;
          pos += n;
          if (this.skipLeft === 0) {
            this.state = State.OptionHeader;
            this.sink.optionTooBig(this.option, this.dataLength);
          }
          break;
        }
      }
    }
  }

  private onHeader(buf: Buffer, at: number): void {
    switch (this.state) {
      case State.ClientFlags:
        this.state = State.OptionHeader;
        this.sink.clientFlags(buf.readUInt32BE(at));
        return;
      case State.OptionHeader: {
        if (buf.readBigUInt64BE(at) !== IHAVEOPT) return this.fail('NBD_BAD_HANDSHAKE', 'option does not start with IHAVEOPT');
        this.option = buf.readUInt32BE(at + 8);
        const length = buf.readUInt32BE(at + 12);
        this.dataLength = length;
        if (length > this.maxOptionData) {
          this.state = State.OptionSkip;
          this.skipLeft = length;
          return;
        }
        if (length === 0) {
          this.sink.option(this.option, EMPTY);
          return;
        }
        this.state = State.OptionData;
        return;
      }
      case State.RequestHeader: {
        const magic = buf.readUInt32BE(at);
        if (magic !== REQUEST_MAGIC) return this.fail('NBD_BAD_REQUEST', `request magic 0x${magic.toString(16)} is not NBD_REQUEST_MAGIC`);
        const request: { -readonly [K in keyof NbdRequest]: NbdRequest[K] } = {
          flags: buf.readUInt16BE(at + 4),
          type: buf.readUInt16BE(at + 6),
          handleHi: buf.readUInt32BE(at + 8),
          handleLo: buf.readUInt32BE(at + 12),
          offset: buf.readUInt32BE(at + 16) * TWO_32 + buf.readUInt32BE(at + 20),
          length: buf.readUInt32BE(at + 24),
          data: null,
          ownsData: false,
        };
        if (request.type !== NBD_CMD_WRITE) {
          this.sink.request(request);
          return;
        }
        if (request.length > this.maxRequest) {
          return this.fail('NBD_REQUEST_TOO_LARGE', `write of ${request.length} bytes exceeds the ${this.maxRequest}-byte maximum`);
        }
        if (request.length === 0) {
          request.data = EMPTY;
          this.sink.request(request);
          return;
        }
        this.pending = request;
        this.dataLength = request.length;
        this.state = State.RequestData;
        return;
      }
      default:
        return;
    }
  }

  private onPayload(payload: Buffer, owned: boolean): void {
    if (this.state === State.OptionData) {
      this.state = State.OptionHeader;
      this.sink.option(this.option, payload);
      return;
    }
    const request = this.pending!;
    this.pending = null;
    this.state = State.RequestHeader;
    request.data = payload;
    request.ownsData = owned;
    this.sink.request(request);
  }

  private fail(code: 'NBD_BAD_HANDSHAKE' | 'NBD_BAD_REQUEST' | 'NBD_REQUEST_TOO_LARGE', message: string): void {
    this.stop();
    this.sink.protocolError(new HeadstartError(code, message));
  }
}
