/**
 * @headstart/traces — block I/O traces in, one normalised stream out.
 *
 * DEV DOCS
 * Readers for every format a user brings (see ../shared/traces/README.md): VMware vscsi v1
 * (binary, CloudPhysics), MSR Cambridge CSV, SNIA SPC CSV, FIU blkparse text, blkparse's
 * own default output (a Linux blktrace recording), Alibaba CSV, and headstart's own
 * recording (`TraceRecorder`, written by the NBD server). Each format is a push parser
 * (`createParser`) fed any chunking; `readTrace(path)` streams a file through it after
 * `detectFileFormat` picked the format from the head (or `{ format }` names it). Every
 * record comes out as `{ time (s from the first record), op, offset, length, volume? }`;
 * multi-disk traces carry `volume` (MSR DiskNumber, SPC ASU, Alibaba device_id, FIU and
 * blkparse major:minor) and `{ volume }` keeps one. A malformed line throws TRACE_MALFORMED naming
 * its line (or vscsi record) number; `{ lenient: true }` skips it and counts it in `stats`.
 * Files may be compressed (gzip, bzip2, xz, zstd, lz4: told by their magic bytes, see
 * source.ts); an archive of several files (tar, zip) is refused with a clear error.
 */
export { TRACE_FORMATS, diskId, type TraceFormat, type TraceOp, type TraceRecord, type TraceReadOptions, type TraceParser, type ParseStats } from './types';
export { createParser, MAX_LINE_BYTES } from './parser';
export { detectFormat } from './detect';
export { readTrace, parseTrace, detectFileFormat, type TraceStream } from './read';
export { TraceRecorder, type RecordedRequest, type TraceRecorderOptions } from './recorder';
export { HEADSTART_HEADER } from './formats/text';
export { VSCSI_RECORD_BYTES } from './formats/vscsi';
