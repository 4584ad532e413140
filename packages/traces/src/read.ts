/**
 * Reading a trace file as a stream of normalised records, in bounded memory: the file is
 * read in chunks (decompressed if it is compressed, see source.ts) and pushed through the
 * format's parser.
 */
import { HeadstartError, isHeadstartError } from '@headstart/errors';
import { createParser } from './parser';
import { detectFormat, DETECT_BYTES } from './detect';
import { traceBytes } from './source';
import type { ParseStats, TraceFormat, TraceReadOptions, TraceRecord } from './types';

/**
 * A trace's content errors name the file: a user who passed several traces (or a glob) must
 * see which one has the bad line. I/O errors already do.
 */
function inFile(path: string, err: unknown): unknown {
  if (!isHeadstartError(err) || (err.code !== 'TRACE_MALFORMED' && err.code !== 'TRACE_FORMAT_UNKNOWN') || err.message.includes(path)) return err;
  return new HeadstartError(err.code, `${path}: ${err.message}`, { cause: err, details: { ...err.details, path } });
}

/** Detects the format of a file from its first (decompressed) bytes; `lenient` as for detectFormat. */
export async function detectFileFormat(path: string, lenient = false): Promise<TraceFormat> {
  try {
    return await detectHead(path, lenient);
  } catch (err) {
    throw inFile(path, err);
  }
}

async function detectHead(path: string, lenient: boolean): Promise<TraceFormat> {
  const held: Uint8Array[] = [];
  let bytes = 0;
  let complete = true;
  for await (const chunk of traceBytes(path)) {
    held.push(chunk);
    bytes += chunk.length;
    if (bytes >= DETECT_BYTES) {
      complete = false;
      break;
    }
  }
  const head = Buffer.concat(held);
  // A file of exactly DETECT_BYTES counts as cut: its last line is then left out, which
  // only costs detection one sample line.
  return detectFormat(head.subarray(0, DETECT_BYTES), complete, lenient);
}

export interface TraceStream extends AsyncIterable<TraceRecord> {
  readonly format: TraceFormat;
  /** Filled in as the stream is read; final once iteration ends. */
  readonly stats: ParseStats;
}

/** Streams the records of a trace file (format auto-detected unless given; gzip, bzip2, xz, zstd and lz4 decompressed). */
export async function readTrace(path: string, options: TraceReadOptions = {}): Promise<TraceStream> {
  const format = options.format ?? (await detectFileFormat(path, options.lenient === true));
  const parser = createParser(format, options);
  async function* records(): AsyncGenerator<TraceRecord> {
    try {
      for await (const chunk of traceBytes(path)) yield* parser.feed(chunk);
      yield* parser.end();
    } catch (err) {
      throw inFile(path, err);
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
