/**
 * Reading a trace file as a stream of normalised records, in bounded memory: the file is
 * read in chunks and pushed through the format's parser.
 */
import { open } from 'node:fs/promises';
import { HeadstartError } from '@headstart/errors';
import { createParser } from './parser';
import { detectFormat, DETECT_BYTES } from './detect';
import type { ParseStats, TraceFormat, TraceReadOptions, TraceRecord } from './types';

const CHUNK_BYTES = 1 << 20;

function ioError(path: string, err: unknown): HeadstartError {
  return new HeadstartError('TRACE_IO', `cannot read trace ${path}: ${(err as Error)?.message ?? String(err)}`, { cause: err });
}

/** Detects the format of a file from its first bytes. */
export async function detectFileFormat(path: string): Promise<TraceFormat> {
  let fh;
  try {
    fh = await open(path, 'r');
  } catch (err) {
    throw ioError(path, err);
  }
  try {
    const buf = Buffer.alloc(DETECT_BYTES);
    const { bytesRead } = await fh.read(buf, 0, DETECT_BYTES, 0);
    const size = (await fh.stat()).size;
    return detectFormat(buf.subarray(0, bytesRead), bytesRead >= size);
  } finally {
    await fh.close();
  }
}

export interface TraceStream extends AsyncIterable<TraceRecord> {
  readonly format: TraceFormat;
  /** Filled in as the stream is read; final once iteration ends. */
  readonly stats: ParseStats;
}

/** Streams the records of a trace file (format auto-detected unless given). */
export async function readTrace(path: string, options: TraceReadOptions = {}): Promise<TraceStream> {
  const format = options.format ?? (await detectFileFormat(path));
  const parser = createParser(format, options);
  async function* records(): AsyncGenerator<TraceRecord> {
    let fh;
    try {
      fh = await open(path, 'r');
    } catch (err) {
      throw ioError(path, err);
    }
    try {
      const buf = Buffer.alloc(CHUNK_BYTES);
      for (;;) {
        let n: number;
        try {
          n = (await fh.read(buf, 0, CHUNK_BYTES, null)).bytesRead;
        } catch (err) {
          throw ioError(path, err);
        }
        if (n === 0) break;
        yield* parser.feed(buf.subarray(0, n));
      }
      yield* parser.end();
    } finally {
      await fh.close();
    }
  }
  return { format, stats: parser.stats, [Symbol.asyncIterator]: records };
}

/** Parses a whole in-memory trace (tests, small uploads). */
export function parseTrace(bytes: Uint8Array, options: TraceReadOptions = {}): { format: TraceFormat; records: TraceRecord[]; stats: ParseStats } {
  const format = options.format ?? detectFormat(bytes.subarray(0, DETECT_BYTES), bytes.length <= DETECT_BYTES);
  const parser = createParser(format, options);
  const records = [...parser.feed(bytes), ...parser.end()];
  return { format, records, stats: parser.stats };
}
