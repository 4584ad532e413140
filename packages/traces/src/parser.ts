/**
 * Streaming trace parsers: each is a state machine fed any chunking of a file (a record or
 * line may be split anywhere). Text formats are cut into lines here and handed to the
 * per-format line function; vscsi is cut into 32-byte records. Times are rebased to
 * seconds from the first record, so every format yields the same normalised stream.
 */
import { HeadstartError } from '@headstart/errors';
import { decodeVscsi, VSCSI_RECORD_BYTES } from './formats/vscsi';
import { LINE_PARSERS, SKIP, type RawRecord } from './formats/text';
import { diskId, type ParseStats, type TraceFormat, type TraceParser, type TraceReadOptions, type TraceRecord } from './types';

/** A line longer than this is not a trace line (a binary file read as text, or garbage). */
export const MAX_LINE_BYTES = 4096;
const MAX_PROBLEMS = 10;

abstract class BaseParser implements TraceParser {
  readonly stats: ParseStats = { records: 0, skipped: 0, problems: [] };
  private base: number | null = null;
  private readonly volume: string | undefined;

  constructor(
    readonly format: TraceFormat,
    private readonly options: TraceReadOptions,
  ) {
    this.volume = options.volume === undefined ? undefined : diskId(options.volume);
  }

  abstract feed(chunk: Uint8Array): TraceRecord[];
  abstract end(): TraceRecord[];

  /** `where` is "line N" or "record N"; throws unless lenient. */
  protected bad(where: string, why: string): void {
    if (!this.options.lenient) throw new HeadstartError('TRACE_MALFORMED', `${this.format} trace, ${where}: ${why}`, { details: { format: this.format, where } });
    this.stats.skipped++;
    if (this.stats.problems.length < MAX_PROBLEMS) this.stats.problems.push(`${where}: ${why}`);
  }

  protected accept(raw: RawRecord, out: TraceRecord[]): void {
    if (this.base === null) this.base = raw.t;
    if (this.volume !== undefined && raw.volume !== this.volume) return;
    this.stats.records++;
    const time = raw.t - this.base;
    out.push(raw.volume === undefined ? { time, op: raw.op, offset: raw.offset, length: raw.length } : { time, op: raw.op, offset: raw.offset, length: raw.length, volume: raw.volume });
  }
}

class TextParser extends BaseParser {
  private pending: Uint8Array[] = [];
  private pendingBytes = 0;
  private line = 0;
  private readonly decoder = new TextDecoder('utf-8', { fatal: false });
  private readonly parseLine;

  constructor(format: Exclude<TraceFormat, 'vscsi'>, options: TraceReadOptions) {
    super(format, options);
    this.parseLine = LINE_PARSERS[format]();
  }

  feed(chunk: Uint8Array): TraceRecord[] {
    const out: TraceRecord[] = [];
    let start = 0;
    for (;;) {
      const nl = chunk.indexOf(0x0a, start);
      if (nl < 0) break;
      this.take(chunk.subarray(start, nl), out, true);
      start = nl + 1;
    }
    if (start < chunk.length) this.take(chunk.subarray(start), out, false);
    return out;
  }

  end(): TraceRecord[] {
    const out: TraceRecord[] = [];
    if (this.pendingBytes > 0) this.take(new Uint8Array(0), out, true);
    return out;
  }

  private take(piece: Uint8Array, out: TraceRecord[], complete: boolean): void {
    if (this.pendingBytes + piece.length > MAX_LINE_BYTES) {
      // Keep reading from the next newline, but never buffer an endless "line".
      if (this.pendingBytes <= MAX_LINE_BYTES) {
        this.line++;
        this.bad(`line ${this.line}`, `longer than ${MAX_LINE_BYTES} bytes (is this a binary file?)`);
      }
      this.pendingBytes = MAX_LINE_BYTES + 1;
      this.pending = [];
      if (complete) this.pendingBytes = 0;
      return;
    }
    if (!complete) {
      // A copy: the caller may reuse its buffer (and Buffer#slice would not copy).
      this.pending.push(Uint8Array.prototype.slice.call(piece));
      this.pendingBytes += piece.length;
      return;
    }
    let bytes = piece;
    if (this.pendingBytes > 0) {
      this.pending.push(piece);
      bytes = Buffer.concat(this.pending);
      this.pending = [];
      this.pendingBytes = 0;
    }
    this.line++;
    const text = this.decoder.decode(bytes).replace(/\r$/, '');
    if (text.trim() === '') return;
    const r = this.parseLine(text);
    if (r === SKIP) return;
    if ('error' in r) return this.bad(`line ${this.line}`, r.error);
    this.accept(r, out);
  }
}

class VscsiParser extends BaseParser {
  private readonly partial = new Uint8Array(VSCSI_RECORD_BYTES);
  private partialBytes = 0;
  private record = 0;

  constructor(options: TraceReadOptions) {
    super('vscsi', options);
  }

  feed(chunk: Uint8Array): TraceRecord[] {
    const out: TraceRecord[] = [];
    let at = 0;
    if (this.partialBytes > 0) {
      const n = Math.min(VSCSI_RECORD_BYTES - this.partialBytes, chunk.length);
      this.partial.set(chunk.subarray(0, n), this.partialBytes);
      this.partialBytes += n;
      at = n;
      if (this.partialBytes < VSCSI_RECORD_BYTES) return out;
      this.one(this.partial, 0, out);
      this.partialBytes = 0;
    }
    for (; at + VSCSI_RECORD_BYTES <= chunk.length; at += VSCSI_RECORD_BYTES) this.one(chunk, at, out);
    if (at < chunk.length) {
      this.partial.set(chunk.subarray(at), 0);
      this.partialBytes = chunk.length - at;
    }
    return out;
  }

  end(): TraceRecord[] {
    if (this.partialBytes > 0) {
      this.bad(`record ${this.record + 1}`, `truncated: ${this.partialBytes} of ${VSCSI_RECORD_BYTES} bytes at the end of the file`);
      this.partialBytes = 0;
    }
    return [];
  }

  private one(buf: Uint8Array, at: number, out: TraceRecord[]): void {
    this.record++;
    const r = decodeVscsi(buf, at);
    if ('error' in r) return this.bad(`record ${this.record}`, r.error);
    this.accept(r, out);
  }
}

export function createParser(format: TraceFormat, options: TraceReadOptions = {}): TraceParser {
  return format === 'vscsi' ? new VscsiParser(options) : new TextParser(format, options);
}
