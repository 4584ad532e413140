/**
 * headstart's own trace format and its recorder, so any software run through headstart's
 * NBD server becomes a workload for the planner's evaluator.
 *
 * Format (text, one request a line, `#` lines are comments):
 *   # headstart-trace v1 time_ms,op,offset,length
 *   1732387200123.456,write,1048576,4096
 * `time_ms` is milliseconds on any fixed origin (the recorder writes epoch ms from its
 * clock, so appending a later session to the same file keeps one timeline); readers rebase
 * to the first record. `op` is write, read, trim or flush; offset and length in bytes.
 *
 * `record()` is synchronous and cheap (the NBD server calls it on its hot path): lines are
 * buffered and appended in batches; an I/O failure surfaces at the next `flush()`/`close()`.
 */
import { open, type FileHandle } from 'node:fs/promises';
import { HeadstartError } from '@headstart/errors';
import { HEADSTART_HEADER } from './formats/text';
import type { TraceOp } from './types';

const FLUSH_BYTES = 64 * 1024;

export interface RecordedRequest {
  /** Epoch ms; the recorder's clock when omitted. */
  readonly time?: number;
  readonly op: Exclude<TraceOp, 'other'>;
  readonly offset: number;
  readonly length: number;
}

export interface TraceRecorderOptions {
  readonly clock?: { now(): number };
}

export class TraceRecorder {
  private lines: string[] = [];
  private bytes = 0;
  private writing: Promise<void> = Promise.resolve();
  private failure: HeadstartError | null = null;
  private closed = false;
  private count = 0;

  private constructor(
    private readonly fh: FileHandle,
    readonly path: string,
    private readonly clock: { now(): number },
  ) {}

  /** Opens (creating, or appending to a headstart trace) `path`. */
  static async open(path: string, options: TraceRecorderOptions = {}): Promise<TraceRecorder> {
    let fh: FileHandle;
    try {
      fh = await open(path, 'a+');
    } catch (err) {
      throw new HeadstartError('TRACE_IO', `cannot open trace ${path} for recording: ${(err as Error).message}`, { cause: err });
    }
    try {
      const size = (await fh.stat()).size;
      if (size === 0) {
        await fh.appendFile(HEADSTART_HEADER + '\n');
      } else {
        const head = Buffer.alloc(HEADSTART_HEADER.length);
        await fh.read(head, 0, head.length, 0);
        if (head.toString('utf8') !== HEADSTART_HEADER) {
          throw new HeadstartError('TRACE_FORMAT_UNKNOWN', `${path} exists and is not a headstart trace; refusing to append to it`);
        }
      }
    } catch (err) {
      await fh.close();
      if (err instanceof HeadstartError) throw err;
      throw new HeadstartError('TRACE_IO', `cannot prepare trace ${path}: ${(err as Error).message}`, { cause: err });
    }
    return new TraceRecorder(fh, path, options.clock ?? Date);
  }

  /** Requests recorded so far (accepted by `record`). */
  get recorded(): number {
    return this.count;
  }

  record(req: RecordedRequest): void {
    if (this.closed) throw new HeadstartError('TRACE_IO', `trace recorder for ${this.path} is closed`);
    const time = req.time ?? this.clock.now();
    if (!Number.isFinite(time) || !Number.isSafeInteger(req.offset) || req.offset < 0 || !Number.isSafeInteger(req.length) || req.length < 0) {
      throw new HeadstartError('PLANNER_BAD_INPUT', `cannot record ${req.op} at ${req.offset}+${req.length} time ${time}: need a finite time and whole non-negative offset and length`);
    }
    if (!['write', 'read', 'trim', 'flush'].includes(req.op)) throw new HeadstartError('PLANNER_BAD_INPUT', `cannot record operation ${String(req.op)}`);
    const line = `${Math.round(time * 1000) / 1000},${req.op},${req.offset},${req.length}\n`;
    this.lines.push(line);
    this.bytes += line.length;
    this.count++;
    if (this.bytes >= FLUSH_BYTES) void this.flush().catch(() => {});
  }

  /** Appends everything recorded so far; throws TRACE_IO if any append failed. */
  async flush(): Promise<void> {
    if (this.lines.length > 0) {
      const text = this.lines.join('');
      this.lines = [];
      this.bytes = 0;
      this.writing = this.writing.then(async () => {
        if (this.failure) return;
        try {
          await this.fh.appendFile(text);
        } catch (err) {
          this.failure = new HeadstartError('TRACE_IO', `cannot append to trace ${this.path}: ${(err as Error).message}`, { cause: err });
        }
      });
    }
    await this.writing;
    if (this.failure) throw this.failure;
  }

  async close(): Promise<void> {
    if (this.closed) return;
    try {
      await this.flush();
    } finally {
      this.closed = true;
      await this.fh.close();
    }
  }
}
