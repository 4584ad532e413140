/** The normalised shapes every trace reader produces (see index.ts for the door). */

export type TraceFormat = 'vscsi' | 'msr' | 'spc' | 'fiu' | 'blkparse' | 'alibaba' | 'headstart';

export const TRACE_FORMATS: readonly TraceFormat[] = ['vscsi', 'msr', 'spc', 'fiu', 'blkparse', 'alibaba', 'headstart'];

export type TraceOp = 'write' | 'read' | 'trim' | 'flush' | 'other';

/** One request of a trace, normalised. */
export interface TraceRecord {
  /** Seconds from the trace's first record (may be slightly negative if the trace is not sorted). */
  readonly time: number;
  readonly op: TraceOp;
  /** Byte offset on the volume. */
  readonly offset: number;
  /** Bytes. */
  readonly length: number;
  /** For traces of several disks (MSR DiskNumber, SPC ASU, Alibaba device, FIU and blkparse major:minor): which one. */
  readonly volume?: string;
}

/**
 * A disk's name as records carry it: major:minor for FIU and blkparse traces, which blkparse
 * itself prints as "8,0", so either spelling names the same disk.
 */
export function diskId(name: string): string {
  const t = name.trim();
  const m = /^(\d+)[,:](\d+)$/.exec(t);
  return m === null ? t : `${m[1]}:${m[2]}`;
}

export interface TraceReadOptions {
  /** Skip auto-detection. */
  readonly format?: TraceFormat;
  /** Skip malformed records and count them instead of throwing TRACE_MALFORMED. */
  readonly lenient?: boolean;
  /** Keep only the records of this disk / device / ASU. */
  readonly volume?: string;
}

/** What a streaming parser reports besides its records. */
export interface ParseStats {
  records: number;
  skipped: number;
  /** First few problems seen while lenient: `line N: why`. */
  readonly problems: string[];
}

/**
 * A push parser: a state machine fed any chunking of the file's bytes. `feed` and `end`
 * return the records completed by that input (never the same record twice).
 */
export interface TraceParser {
  readonly format: TraceFormat;
  readonly stats: ParseStats;
  feed(chunk: Uint8Array): TraceRecord[];
  end(): TraceRecord[];
}
