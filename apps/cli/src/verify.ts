/**
 * `headstart verify VOLUME --replica nbd://host:port/name`: the source holds a fresh point
 * until its replica committed it (see packages/node/src/verify.ts), the replica's read-only
 * NBD export is read range by range, and range hashes are compared. Reports the differing
 * byte ranges; exit code 4 when there are any.
 */
import { SingleBar, Presets } from 'cli-progress';

export interface VerifyReport {
  volume: string;
  point: number;
  ranges_compared: number;
  differing: { offset: number; length: number }[];
  equal: boolean;
  seconds: number;
}

export interface VerifyOptions {
  /** Wait for this sink only (default: every sink of the volume). */
  readonly sink?: string;
  /** Say what it waits for (stderr): a wait behind a backlog is long, and silence looks hung. */
  readonly say: boolean;
  /** A progress bar (a terminal). */
  readonly showProgress: boolean;
}

export async function verify(configPath: string, volume: string, replicaUrl: string, o: VerifyOptions): Promise<VerifyReport> {
  const started = Date.now();
  const { loadConfig, callAdmin, compareWithReplica, parseNbdUrl } = await import('@headstart/node');
  const config = await loadConfig(configPath);
  parseNbdUrl(replicaUrl); // a bad URL is refused before the source holds anything
  const base = `/v1/volumes/${encodeURIComponent(volume)}`;
  // Behind a backlog the point takes as long as the link needs (the node waits while the link
  // makes progress); say so, or a silent terminal looks hung.
  if (o.say) process.stderr.write(`closing a point of ${volume} and waiting until ${o.sink === undefined ? 'every sink' : `sink ${o.sink}`} committed it (headstart status shows the link)...\n`);
  const plan = (await callAdmin(config, 'POST', `${base}/verify-begin${o.sink === undefined ? '' : `?sink=${encodeURIComponent(o.sink)}`}`)) as { volume: string; n: number; size: number; rangeBytes: number; hashes: string[] };
  try {
    const bar = o.showProgress ? new SingleBar({ format: 'verify {bar} {percentage}% | {value}/{total} MiB | {eta}s left', hideCursor: true }, Presets.shades_classic) : null;
    bar?.start(Math.ceil(plan.size / 2 ** 20), 0);
    // The source holds the point as long as the comparison renews it: a large volume reads for longer than the hold.
    const keepHold = () => callAdmin(config, 'POST', `${base}/verify-renew?n=${plan.n}`);
    const r = await compareWithReplica(plan, replicaUrl, (done) => bar?.update(Math.floor(Math.min(done * plan.rangeBytes, plan.size) / 2 ** 20)), keepHold);
    bar?.stop();
    return { volume, point: r.point, ranges_compared: r.rangesCompared, differing: r.differing.map(([offset, length]) => ({ offset, length })), equal: r.equal, seconds: (Date.now() - started) / 1000 };
  } finally {
    // Its own hold only: had it expired, another verification may hold the volume now.
    await callAdmin(config, 'POST', `${base}/verify-end?n=${plan.n}`).catch(() => {});
  }
}
