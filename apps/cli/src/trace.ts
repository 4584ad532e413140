/** Trace files for `headstart demo --trace`: any format @headstart/traces reads; writes only. */
import { readTrace, type TraceFormat } from '@headstart/traces';

const mib = (bytes: number) => `${(bytes / 2 ** 20).toFixed(bytes < 2 ** 30 ? 1 : 0)} MiB`;

export interface TraceWritesOptions {
  /** The disk of a multi-disk trace to replay (MSR DiskNumber, SPC ASU, ...); default: the first seen. */
  readonly disk?: string;
  /** The trace's format (default: detected), and whether malformed records are skipped (and said) rather than fatal. */
  readonly format?: TraceFormat;
  readonly lenient?: boolean;
  /** The demo volume's size: writes beyond it wrap around it (see replayTrace). */
  readonly volumeSize: number;
  /** Said once each: another disk was skipped, a write wrapped. */
  readonly onNote: (note: string) => void;
}

/**
 * The writes of one disk of the trace. A multi-disk trace's disks are separate volumes
 * (their offsets overlap): replaying them into one volume would make up rewrites that
 * never happened, so only one is replayed, and the operator is told which.
 */
export async function* readTraceWrites(path: string, o: TraceWritesOptions): AsyncGenerator<{ time: number; offset: number; length: number }> {
  const stream = await readTrace(path, { ...(o.disk === undefined ? {} : { volume: o.disk }), ...(o.format === undefined ? {} : { format: o.format }), lenient: o.lenient === true });
  let disk: string | undefined = o.disk;
  const others = new Set<string>();
  let wrapped = false;
  let writes = 0;
  for await (const r of stream) {
    if (r.volume !== undefined && disk === undefined) disk = r.volume;
    if (r.volume !== undefined && r.volume !== disk) {
      if (others.size === 0) o.onNote(`the trace has several disks: replaying disk ${disk} only (--disk picks another)`);
      others.add(r.volume);
      continue;
    }
    if (r.op !== 'write' || r.length <= 0) continue;
    writes++;
    if (!wrapped && r.offset + r.length > o.volumeSize) {
      wrapped = true;
      o.onNote(`the trace writes beyond the ${mib(o.volumeSize)} volume (at ${mib(r.offset)}): offsets wrap around it, which adds rewrites the trace does not have; --size as large as the trace's disk replays it as recorded`);
    }
    yield { time: Math.max(0, r.time), offset: r.offset, length: r.length };
  }
  if (o.disk !== undefined && writes === 0) o.onNote(`the trace has no writes on disk ${o.disk}`);
  const { skipped, problems } = stream.stats;
  if (skipped > 0) o.onNote(`skipped ${skipped} malformed record(s) of the trace (--lenient): ${problems.join('; ')}${skipped > problems.length ? '; ...' : ''}`);
}
