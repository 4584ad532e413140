/**
 * `headstart verify VOLUME --replica nbd://host:port/name`: the source holds a fresh point
 * until its replica committed it (see packages/node/src/verify.ts), the replica's read-only
 * NBD export is read range by range, and range hashes are compared. Reports the differing
 * byte ranges; exit code 4 when there are any.
 */
import { SingleBar, Presets } from 'cli-progress';
import { HeadstartError } from '@headstart/errors';

export interface VerifyReport {
  volume: string;
  point: number;
  ranges_compared: number;
  differing: { offset: number; length: number }[];
  equal: boolean;
  seconds: number;
}

function parseNbdUrl(url: string): { host: string; port: number; exportName: string } {
  const m = /^nbd:\/\/([^/:]+|\[[^\]]+\])(?::(\d+))?\/(.*)$/.exec(url);
  if (!m) throw new HeadstartError('CONFIG_INVALID', `--replica must be nbd://host[:port]/export, not ${JSON.stringify(url)}`);
  return { host: m[1].replace(/^\[|\]$/g, ''), port: Number(m[2] ?? 10809), exportName: decodeURIComponent(m[3]) };
}

export async function verify(configPath: string, volume: string, replicaUrl: string, showProgress: boolean): Promise<VerifyReport> {
  const started = Date.now();
  const { loadConfig, callAdmin, rangeHash, differingRanges } = await import('@headstart/node');
  const { connectNbd } = await import('@headstart/nbd');
  const config = await loadConfig(configPath);
  const target = parseNbdUrl(replicaUrl);
  const base = `/v1/volumes/${encodeURIComponent(volume)}`;
  const plan = (await callAdmin(config, 'POST', `${base}/verify-begin`)) as { n: number; size: number; rangeBytes: number; hashes: string[] };
  try {
    const client = await connectNbd(target);
    try {
      if (client.size !== plan.size) throw new HeadstartError('VERIFY_SHAPE', `replica export is ${client.size} bytes, the source volume ${plan.size}`);
      const bar = showProgress ? new SingleBar({ format: 'verify {bar} {percentage}% | {value}/{total} MiB | {eta}s left', hideCursor: true }, Presets.shades_classic) : null;
      bar?.start(Math.ceil(plan.size / 2 ** 20), 0);
      const theirs: string[] = [];
      for (let at = 0; at < plan.size; at += plan.rangeBytes) {
        theirs.push(rangeHash(await client.read(at, Math.min(plan.rangeBytes, plan.size - at))));
        bar?.update(Math.floor(Math.min(at + plan.rangeBytes, plan.size) / 2 ** 20));
      }
      bar?.stop();
      const diff = differingRanges(plan.hashes, theirs, plan.rangeBytes, plan.size);
      return { volume, point: plan.n, ranges_compared: theirs.length, differing: diff.map(([offset, length]) => ({ offset, length })), equal: diff.length === 0, seconds: (Date.now() - started) / 1000 };
    } finally {
      await client.close().catch(() => {});
    }
  } finally {
    await callAdmin(config, 'POST', `${base}/verify-end`).catch(() => {});
  }
}
