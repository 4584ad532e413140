/**
 * Verification of a replica against its source, end to end and without false alarms.
 *
 * The source takes a point n while a temporary sink keeps n readable (its overwritten
 * blocks are preserved), holds the schedule so no later point closes, and waits until the
 * sink committed n. The replica's image then *is* point n and stays so (pre-sent blocks of
 * the next point only stage), so comparing range hashes of the source's point n with the
 * replica's image can only differ where the data really differs. The source releases the
 * hold when the comparison is done (or after a timeout, so a vanished operator never stops
 * replication for long).
 */
import { createHash } from 'node:crypto';
import { HeadstartError } from '@headstart/errors';
import { connectNbd } from '@headstart/nbd';
import type { Volume } from '@headstart/volume';

export const VERIFY_SINK = 'verify-hold';
/** Hash ranges of this many bytes (a differing range names where to look). */
export const VERIFY_RANGE_BYTES = 1 << 20;
/** A hold released by nobody ends on its own after this long (from its point's hashes, or its last renewal). */
export const VERIFY_HOLD_MS = 10 * 60_000;
/**
 * A comparison renews the hold this often: a large volume's takes longer than the hold (a
 * 1 TiB one reads for most of an hour), and past it newer points commit on the replica under
 * the read, which would show as differences that are not real.
 */
export const VERIFY_RENEW_MS = 60_000;

export interface VerifyPlan {
  readonly volume: string;
  readonly n: number;
  readonly size: number;
  readonly rangeBytes: number;
  /** sha256 (hex, first 32 chars) of each range of point n on the source. */
  readonly hashes: readonly string[];
}

export function rangeHash(data: Uint8Array): string {
  return createHash('sha256').update(data).digest('hex').slice(0, 32);
}

/** Hashes every range of closed point n (which must be readable). */
export async function hashPoint(volume: Volume, n: number, rangeBytes = VERIFY_RANGE_BYTES): Promise<string[]> {
  const bs = volume.blockSize;
  const per = Math.max(1, Math.floor(rangeBytes / bs));
  const out: string[] = [];
  for (let first = 0; first < volume.blockCount; first += per) {
    out.push(rangeHash(await volume.readBlocksAt(n, first, Math.min(per, volume.blockCount - first))));
  }
  return out;
}

/** Differing ranges as [offset, length] byte pairs, adjacent ones merged. */
export function differingRanges(source: readonly string[], replica: readonly string[], rangeBytes: number, size: number): [number, number][] {
  if (source.length !== replica.length) throw new HeadstartError('VERIFY_SHAPE', `source has ${source.length} ranges, replica ${replica.length}`);
  const out: [number, number][] = [];
  source.forEach((h, i) => {
    if (h === replica[i]) return;
    const offset = i * rangeBytes;
    const length = Math.min(rangeBytes, size - offset);
    const last = out.at(-1);
    if (last && last[0] + last[1] === offset) last[1] += length;
    else out.push([offset, length]);
  });
  return out;
}

/** Where a replica's read-only export is: nbd://host[:port]/export. */
export function parseNbdUrl(url: string): { host: string; port: number; exportName: string } {
  const m = /^nbd:\/\/([^/:]+|\[[^\]]+\])(?::(\d+))?\/(.*)$/.exec(url);
  if (!m) throw new HeadstartError('CONFIG_INVALID', `a replica export is nbd://host[:port]/export, not ${JSON.stringify(url)}`);
  return { host: m[1].replace(/^\[|\]$/g, ''), port: Number(m[2] ?? 10809), exportName: decodeURIComponent(m[3]) };
}

export interface VerifyOutcome {
  readonly volume: string;
  readonly point: number;
  readonly rangesCompared: number;
  /** Differing byte ranges, [offset, length], adjacent ones merged. */
  readonly differing: [number, number][];
  readonly equal: boolean;
}

/**
 * Reads the replica's export range by range and compares it with the plan's hashes (the
 * replica must hold the plan's point: see beginVerify). `onRange(done, total)` reports progress.
 * `keepHold` renews the source's hold on the point (every VERIFY_RENEW_MS, and once when the
 * read is done): if it throws, the hold ended under the read and nothing is compared.
 */
export async function compareWithReplica(plan: VerifyPlan, replicaUrl: string, onRange?: (done: number, total: number) => void, keepHold?: () => Promise<unknown>): Promise<VerifyOutcome> {
  const client = await connectNbd(parseNbdUrl(replicaUrl));
  try {
    if (client.size !== plan.size) throw new HeadstartError('VERIFY_SHAPE', `replica export is ${client.size} bytes, the source volume ${plan.size}`);
    const theirs: string[] = [];
    let renewedAt = Date.now();
    for (let at = 0; at < plan.size; at += plan.rangeBytes) {
      if (keepHold !== undefined && Date.now() - renewedAt >= VERIFY_RENEW_MS) {
        await keepHold();
        renewedAt = Date.now();
      }
      theirs.push(rangeHash(await client.read(at, Math.min(plan.rangeBytes, plan.size - at))));
      onRange?.(theirs.length, plan.hashes.length);
    }
    // Still held at the end: every range read was of the plan's point.
    await keepHold?.();
    const differing = differingRanges(plan.hashes, theirs, plan.rangeBytes, plan.size);
    return { volume: plan.volume, point: plan.n, rangesCompared: theirs.length, differing, equal: differing.length === 0 };
  } finally {
    await client.close().catch(() => {});
  }
}
