/**
 * Workloads for the demo and for drills, written through a real NBD connection like any
 * client's: a built-in generator shaped like real volumes (a hot region, a log that wraps
 * around and so rewrites on a period, cold scattered writes; bursts and quiet spells), or
 * the replay of a recorded block trace at a chosen speed.
 */
import type { NbdClient } from '@headstart/nbd';

export interface WorkloadStats {
  writes: number;
  bytes: number;
  errors: number;
}

export interface GeneratedWorkloadOptions {
  readonly client: NbdClient;
  /** Mean write rate, bytes/s (bursts go above it, quiet spells below). */
  readonly bytesPerSecond: number;
  readonly seed?: number;
  readonly signal: AbortSignal;
  /** Requests in flight at once. */
  readonly depth?: number;
}

/** xorshift32: a deterministic generator, so a demo run can be repeated. */
function random(seed: number): () => number {
  let x = seed >>> 0 || 0x9e3779b9;
  return () => {
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    return x / 0x100000000;
  };
}

const sleep = (ms: number, signal: AbortSignal) =>
  new Promise<void>((resolve) => {
    if (signal.aborted) return resolve();
    const onAbort = () => {
      clearTimeout(t);
      resolve();
    };
    const t = setTimeout(() => {
      signal.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    signal.addEventListener('abort', onAbort, { once: true });
  });

/**
 * Runs until the signal aborts. Layout of the volume: the first 2% is a write-ahead log
 * written sequentially in 16 KiB records and wrapping (rewrites on a period), the next 8% is
 * hot (60% of the random writes), the rest is cold. Every 5-15 s the phase changes between
 * normal, burst (3x) and quiet (0.2x).
 */
export async function runGeneratedWorkload(o: GeneratedWorkloadOptions): Promise<WorkloadStats> {
  const rand = random(o.seed ?? 1);
  const size = o.client.size;
  const unit = 4096;
  const units = Math.floor(size / unit);
  const logUnits = Math.max(4, Math.floor(units * 0.02));
  const hotStart = logUnits;
  const hotUnits = Math.max(1, Math.floor(units * 0.08));
  const coldStart = hotStart + hotUnits;
  const coldUnits = Math.max(1, units - coldStart);
  const queue = writeQueue(o.client, o.depth ?? 4);
  let logHead = 0;
  let phaseFactor = 1;
  let phaseEnds = 0;
  const started = Date.now();
  let budget = 0;
  let lastTick = started;

  while (!o.signal.aborted) {
    const now = Date.now();
    if (now >= phaseEnds) {
      const r = rand();
      phaseFactor = r < 0.2 ? 3 : r < 0.45 ? 0.2 : 1;
      phaseEnds = now + 5000 + rand() * 10_000;
    }
    budget = Math.min(budget + ((now - lastTick) / 1000) * o.bytesPerSecond * phaseFactor, o.bytesPerSecond);
    lastTick = now;
    if (budget < unit) {
      await sleep(20, o.signal);
      continue;
    }
    let offset: number;
    let length: number;
    const kind = rand();
    if (kind < 0.3) {
      length = 4 * unit;
      offset = (logHead % Math.floor(logUnits / 4)) * 4 * unit;
      logHead++;
    } else if (kind < 0.72) {
      length = unit * (1 + Math.floor(rand() * 4));
      offset = (hotStart + Math.floor(rand() * Math.max(1, hotUnits - 4))) * unit;
    } else {
      length = unit * (1 + Math.floor(rand() * 16));
      offset = (coldStart + Math.floor(rand() * Math.max(1, coldUnits - 16))) * unit;
    }
    length = Math.min(length, size - offset);
    if (length <= 0) continue;
    budget -= length;
    await queue.write(offset, length);
  }
  return queue.drain();
}

export interface TraceWrite {
  /** Seconds from the trace's start. */
  readonly time: number;
  readonly offset: number;
  readonly length: number;
}

/**
 * Replays writes (already read from a trace file) through NBD, `speedup` times faster than
 * recorded. Offsets beyond the volume wrap around it; lengths are rounded up to whole
 * blocks so the replay writes what the trace's blocks are.
 */
export async function replayTrace(o: { client: NbdClient; writes: AsyncIterable<TraceWrite> | Iterable<TraceWrite>; speedup: number; signal: AbortSignal; depth?: number }): Promise<WorkloadStats> {
  const queue = writeQueue(o.client, o.depth ?? 8);
  const size = o.client.size;
  const started = Date.now();
  const MAX_WRITE = 1 << 20;
  for await (const w of o.writes) {
    if (o.signal.aborted) break;
    const due = started + (w.time * 1000) / o.speedup;
    const wait = due - Date.now();
    if (wait > 2) await sleep(wait, o.signal);
    const first = Math.floor(w.offset / 4096) * 4096;
    const offset = first % size;
    const length = Math.min(Math.ceil((w.offset + w.length - first) / 4096) * 4096, MAX_WRITE, size - offset);
    await queue.write(offset, length);
  }
  return queue.drain();
}

/** Every STAMP bytes of a write carry the write's number and their place in it. */
const STAMP = 512;

/**
 * Keeps up to `depth` writes in flight and counts them. Every block of every write carries
 * content no other write has (the write's number in each 512-byte sector, whatever the
 * volume's block size), so a stale replica block can never match and no block is all
 * zeroes (which the link would send without payload, under-counting what a point cost).
 * A fresh buffer each time: the socket holds on to it until the kernel has taken it.
 */
function writeQueue(client: NbdClient, depth: number) {
  const stats: WorkloadStats = { writes: 0, bytes: 0, errors: 0 };
  const inFlight = new Set<Promise<void>>();
  let issued = 0;
  return {
    async write(offset: number, length: number): Promise<void> {
      const data = Buffer.alloc(length, issued & 0xff);
      for (let at = 0; at + 8 <= length; at += STAMP) {
        data.writeUInt32LE(issued >>> 0, at);
        data.writeUInt32LE(at / STAMP + 1, at + 4);
      }
      issued++;
      const p: Promise<void> = client
        .write(offset, data)
        .then(
          () => {
            stats.writes++;
            stats.bytes += length;
          },
          () => {
            stats.errors++;
          },
        )
        .finally(() => inFlight.delete(p));
      inFlight.add(p);
      if (inFlight.size >= depth) await Promise.race(inFlight);
    },
    async drain(): Promise<WorkloadStats> {
      await Promise.all(inFlight);
      return stats;
    },
  };
}
