/**
 * A trace's writes in compact arrays, one workload per volume (a multi-disk trace gives
 * one per disk), sorted by time. Reads are dropped: only writes change what a replica needs.
 * Trims are dropped too (headstart's recorder writes zeroings as trims): they leave zeroes,
 * which the engine ships as a flag without the blocks' bytes, so they cost the link next to
 * nothing. Counted as writes, the discard of a whole 2 GiB device by mkfs.ext4, recorded
 * through the kernel, made the first point 2 GiB and ten times the trace's mean write rate
 * (the link of every run is a multiple of it).
 */
import { HeadstartError } from '@headstart/errors';
import { diskId, readTrace, type TraceReadOptions } from '@headstart/traces';

/** A trace without writes on the disk asked for names at most this many that have some. */
const MAX_DISKS_NAMED = 16;

export interface Workload {
  /** Trace name plus `#disk` for one disk of a multi-disk trace. */
  readonly name: string;
  readonly count: number;
  readonly time: Float64Array;
  readonly offset: Float64Array;
  readonly length: Float64Array;
  /** Seconds from the trace's first record to its last (all operations, all disks). */
  readonly duration: number;
  /** Request bytes written. */
  readonly writtenBytes: number;
  /** Smallest volume size (bytes, whole blocks of 1 MiB) that holds every write. */
  readonly volumeSize: number;
}

class Builder {
  time: number[] = [];
  offset: number[] = [];
  length: number[] = [];
  written = 0;
  end = 0;
}

export interface LoadOptions extends TraceReadOptions {
  /** Told once, after a lenient read skipped malformed records: how many, and the first few problems. */
  readonly onSkipped?: (skipped: number, problems: readonly string[]) => void;
}

/** Loads a trace file's writes, split by volume. */
export async function loadWorkloads(path: string, name: string, options: LoadOptions = {}): Promise<Workload[]> {
  // One disk is kept here rather than by the reader, so that the trace's duration (its
  // last record, any disk) and so its mean write rate are the same as without the choice.
  const { onSkipped, volume: asked, ...readOptions } = options;
  const volume = asked === undefined ? undefined : diskId(asked);
  /** Disks that have writes, to name them when the one asked for has none. */
  const disks = new Set<string>();
  const stream = await readTrace(path, readOptions);
  const byVolume = new Map<string, Builder>();
  // The reader rebases times to the file's first record; an unsorted trace has records before
  // it (negative times). The trace starts at its earliest record, whichever line that is.
  let first = Infinity;
  let last = -Infinity;
  for await (const r of stream) {
    if (r.time < first) first = r.time;
    if (r.time > last) last = r.time;
    if (r.op !== 'write') continue;
    if (r.volume !== undefined && disks.size < MAX_DISKS_NAMED) disks.add(r.volume);
    if (volume !== undefined && r.volume !== volume) continue;
    if (r.length === 0) continue;
    const key = r.volume ?? '';
    let b = byVolume.get(key);
    if (b === undefined) byVolume.set(key, (b = new Builder()));
    b.time.push(r.time);
    b.offset.push(r.offset);
    b.length.push(r.length);
    b.written += r.length;
    b.end = Math.max(b.end, r.offset + r.length);
  }
  if (stream.stats.skipped > 0) onSkipped?.(stream.stats.skipped, stream.stats.problems);
  if (volume !== undefined && byVolume.size === 0 && disks.size > 0) {
    const named = [...disks].sort().join(', ');
    throw new HeadstartError('CONFIG_INVALID', `${path} has no writes on disk ${volume}; disks with writes: ${named}${disks.size === MAX_DISKS_NAMED ? ', ...' : ''}`);
  }
  const out: Workload[] = [];
  const keys = [...byVolume.keys()].sort();
  const origin = Number.isFinite(first) ? first : 0;
  const duration = Number.isFinite(last) ? last - origin : 0;
  // One disk of several keeps its number in the name, whether the trace had others or the caller picked it.
  for (const key of keys) out.push(build(keys.length > 1 || (volume !== undefined && key !== '') ? `${name}#${key}` : name, byVolume.get(key)!, duration, origin));
  return out;
}

function build(name: string, b: Builder, duration: number, origin: number): Workload {
  const n = b.time.length;
  if (origin !== 0) for (let i = 0; i < n; i++) b.time[i] -= origin;
  const order = Array.from({ length: n }, (_, i) => i);
  // Traces recorded from several processes are not always in time order: a stable sort.
  let sorted = true;
  for (let i = 1; i < n && sorted; i++) if (b.time[i] < b.time[i - 1]) sorted = false;
  if (!sorted) order.sort((x, y) => b.time[x] - b.time[y] || x - y);
  const time = new Float64Array(n);
  const offset = new Float64Array(n);
  const length = new Float64Array(n);
  order.forEach((src, i) => {
    time[i] = b.time[src];
    offset[i] = b.offset[src];
    length[i] = b.length[src];
  });
  const MiB = 1 << 20;
  return { name, count: n, time, offset, length, duration, writtenBytes: b.written, volumeSize: Math.max(MiB, Math.ceil(b.end / MiB) * MiB) };
}

/** Writes of `w` before `until` seconds (a short slice for quick runs and tests). */
export function sliceWorkload(w: Workload, until: number): Workload {
  let n = 0;
  while (n < w.count && w.time[n] < until) n++;
  let written = 0;
  for (let i = 0; i < n; i++) written += w.length[i];
  return { ...w, name: `${w.name}[0,${until}s)`, count: n, time: w.time.slice(0, n), offset: w.offset.slice(0, n), length: w.length.slice(0, n), duration: Math.min(w.duration, until), writtenBytes: written };
}

/**
 * The same writes on a small volume: the 1 MiB regions the trace touches, packed together
 * in their order, each keeping its blocks' places. The planner's state is per block and per
 * 1 MiB region (its heat map), so it decides exactly as on the original layout, while a
 * real replay (bench:replay) needs an image of a few hundred MiB instead of tens of GiB.
 */
export function compactWorkload(w: Workload): Workload {
  const MiB = 1 << 20;
  const touched = new Set<number>();
  for (let i = 0; i < w.count; i++) {
    const last = Math.floor((w.offset[i] + Math.max(1, w.length[i]) - 1) / MiB);
    for (let r = Math.floor(w.offset[i] / MiB); r <= last; r++) touched.add(r);
  }
  const order = [...touched].sort((a, b) => a - b);
  const packed = new Map(order.map((r, i) => [r, i]));
  const offset = new Float64Array(w.count);
  // A write spanning regions r and r + 1 stays contiguous: both are touched, so they are neighbours.
  for (let i = 0; i < w.count; i++) offset[i] = packed.get(Math.floor(w.offset[i] / MiB))! * MiB + (w.offset[i] % MiB);
  return { ...w, name: `${w.name}(compact)`, offset, volumeSize: Math.max(MiB, order.length * MiB) };
}
