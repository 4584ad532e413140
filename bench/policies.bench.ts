/**
 * bench:policies — load leveling of capture times on the real engine.
 *
 * A real source node and its replica on loopback, in this process: N volumes ship over one
 * link under the node-wide cap (`linkCap`), each written through the source's NBD export by
 * the built-in workload generator (a wrapping log, a hot region, cold writes; bursts and
 * quiet spells) at its own rate, so the volumes weigh differently. Two runs side by side,
 * identical but for `schedule.level`:
 *
 * - aligned: every volume's points fall on the clock's marks (the default), so their closes
 *   and what each holds back until its close hit the link together;
 * - leveled: the node spreads the volumes' points over the interval (leveling.ts).
 *
 * Figures per run, measured on the engine: the link's peak load (payload bytes every sink
 * sent, over sliding windows of interval / N, sampled every 50 ms), its mean, the commit
 * lag, the oldest recovery point (RPO age just before each commit, and at the end) and the
 * recovery-point targets missed (a volume's RPO age went over `rpoTarget`; each time counts).
 * `peak_load_ratio` = leveled peak / aligned peak; `targets_missed` = the leveled run's.
 *
 * Flags: --volumes N (default 4), --interval SECONDS (4), --intervals K (quick 8, full 20),
 * --policy predictive|at-snapshot|continuous (predictive), --cap-x X (link cap / the
 * volumes' summed write rate, 1.5), --rpo-x X (rpoTarget / interval, 1.5).
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { randomBytes } from 'node:crypto';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connectNbd, type NbdClient } from '@headstart/nbd';
import { runGeneratedWorkload, silentLogger, startNode, validateConfig, type HeadstartNode } from '@headstart/node';
import { defineSuite, round, arg } from './lib';

const MiB = 1 << 20;

interface RunFigures {
  readonly peak_bytes_per_s: number;
  readonly mean_bytes_per_s: number;
  /** What the volumes' writers wrote, bytes/s over the whole run (the generator falls behind its rate on a busy machine). */
  readonly written_bytes_per_s: number;
  readonly points_committed: number;
  readonly lag_mean_s: number;
  readonly lag_max_s: number;
  readonly rpo_age_max_s: number;
  readonly targets_missed: number;
  /** Per volume: ms after the clock's marks where its points fell (null: not leveled). */
  readonly offsets_ms: Record<string, number | null>;
}

interface RunSpec {
  readonly level: boolean;
  readonly volumes: number;
  readonly intervalMs: number;
  readonly intervals: number;
  readonly rates: readonly number[];
  /** The node-wide cap, bytes/s; null: the link is loopback's, so the peak is the volumes' own demand. */
  readonly linkCap: number | null;
  readonly rpoTargetMs: number;
  readonly policy: 'predictive' | 'at-snapshot' | 'continuous';
  log(line: string): void;
}

async function runOnce(spec: RunSpec): Promise<RunFigures> {
  const dir = await mkdtemp(join(tmpdir(), 'hs-policies-'));
  const secret = randomBytes(24).toString('hex');
  const names = Array.from({ length: spec.volumes }, (_, i) => `vol${i}`);
  const size = 64 * MiB;
  let replica: HeadstartNode | null = null;
  let source: HeadstartNode | null = null;
  const clients: NbdClient[] = [];
  const stop = new AbortController();
  try {
    replica = await startNode(
      validateConfig({ node: { name: 'site-b', dataDir: join(dir, 'b'), secret }, listen: { peers: '127.0.0.1:0', admin: '127.0.0.1:0' }, volumes: names.map((name) => ({ name, size, role: 'replica' })) }, 'bench site-b'),
      silentLogger(),
    );
    source = await startNode(
      validateConfig(
        {
          node: { name: 'site-a', dataDir: join(dir, 'a'), secret },
          listen: { nbd: '127.0.0.1:0', admin: '127.0.0.1:0' },
          ...(spec.linkCap !== null ? { linkCap: spec.linkCap } : {}),
          peers: [{ name: 'site-b', url: `ws://127.0.0.1:${replica.peersPort}` }],
          volumes: names.map((name) => ({ name, size, role: 'primary', sinks: ['site-b'], policy: { name: spec.policy }, rpoTarget: `${spec.rpoTargetMs}ms`, schedule: { every: `${spec.intervalMs}ms`, ...(spec.level ? { level: true } : {}) } })),
        },
        'bench site-a',
      ),
      silentLogger(),
    );
    const acks: { volume: string; ackedAt: number; scheduledAt: number }[] = [];
    source.subscribe((e) => {
      if (e.type === 'snapshot-acked') acks.push({ volume: e.volume, ackedAt: e.time, scheduledAt: e.time - e.lagMs });
    });
    for (const name of names) clients.push(await connectNbd({ host: '127.0.0.1', port: source.nbdPort!, exportName: name }));
    const workloads = clients.map((client, i) => runGeneratedWorkload({ client, bytesPerSecond: spec.rates[i], seed: 11 + i, signal: stop.signal }));
    const started = Date.now();
    // Measured from the second interval on: the first points of new volumes carry the start.
    const from = started + spec.intervalMs;
    const until = started + spec.intervalMs * (spec.intervals + 1);
    const samples: { t: number; bytes: number }[] = [];
    const offsets: Record<string, number | null> = {};
    while (Date.now() < until) {
      const s = source.status();
      samples.push({ t: Date.now(), bytes: s.volumes.reduce((a, v) => a + v.sinks.reduce((b, k) => b + k.payloadBytesSent, 0), 0) });
      for (const v of s.volumes) offsets[v.name] = v.levelOffsetMs;
      await new Promise((r) => setTimeout(r, 50));
    }
    stop.abort();
    const written = (await Promise.all(workloads)).reduce((a, w) => a + w.bytes, 0);
    const end = Date.now();

    // Peak: the most bytes any window of interval / N carried (sliding, at the samples).
    const window = spec.intervalMs / spec.volumes;
    const inRange = samples.filter((x) => x.t >= from);
    let peak = 0;
    for (let i = 0, j = 0; i < inRange.length; i++) {
      while (j < inRange.length && inRange[j].t - inRange[i].t < window) j++;
      if (j >= inRange.length) break;
      // inRange[j] is the first sample a full window after i: bytes over [t_i, t_j], per second
      peak = Math.max(peak, ((inRange[j].bytes - inRange[i].bytes) / (inRange[j].t - inRange[i].t)) * 1000);
    }
    const last = inRange.at(-1)!;
    const mean = ((last.bytes - inRange[0].bytes) / (last.t - inRange[0].t)) * 1000;

    // Recovery points: the age of the newest committed point peaks just before each commit.
    let missed = 0;
    let ageMax = 0;
    const lags: number[] = [];
    for (const name of names) {
      const mine = acks.filter((a) => a.volume === name).sort((a, b) => a.ackedAt - b.ackedAt);
      for (let k = 1; k < mine.length; k++) {
        if (mine[k].ackedAt < from) continue;
        const age = mine[k].ackedAt - mine[k - 1].scheduledAt;
        ageMax = Math.max(ageMax, age);
        if (age > spec.rpoTargetMs) missed++;
        lags.push(mine[k].ackedAt - mine[k].scheduledAt);
      }
      const tail = mine.length > 0 ? end - mine[mine.length - 1].scheduledAt : end - started;
      ageMax = Math.max(ageMax, tail);
      if (tail > spec.rpoTargetMs) missed++;
    }
    return {
      peak_bytes_per_s: Math.round(peak),
      mean_bytes_per_s: Math.round(mean),
      written_bytes_per_s: Math.round((written / (end - started)) * 1000),
      points_committed: lags.length,
      lag_mean_s: round(lags.reduce((a, b) => a + b, 0) / Math.max(1, lags.length) / 1000),
      lag_max_s: round(Math.max(0, ...lags) / 1000),
      rpo_age_max_s: round(ageMax / 1000),
      targets_missed: missed,
      offsets_ms: offsets,
    };
  } finally {
    stop.abort();
    for (const c of clients) await c.close().catch(() => {});
    await source?.stop().catch(() => {});
    await replica?.stop().catch(() => {});
    await rm(dir, { recursive: true, force: true }).catch(() => {});
  }
}

export default defineSuite({
  name: 'policies',
  description: 'load leveling of capture times on the real engine: the link peak and the RPO targets, aligned against leveled',
  flags: {
    '--volumes': 'volumes sharing the cap (default 4)',
    '--interval': 's: the snapshot interval (default 4)',
    '--intervals': 'intervals to run (default 20, 6 with --quick)',
    '--policy': 'predictive (default), continuous or at-snapshot',
    '--cap-x': 'the shared cap, as a multiple of the volumes\' summed write rate (default 3)',
    '--rpo-x': 'the RPO target, as a multiple of the interval (default 1.5)',
  },
  async run({ quick, args, log }) {
    const volumes = Number(arg(args, '--volumes', '4'));
    const intervalMs = Number(arg(args, '--interval', '4')) * 1000;
    const intervals = Number(arg(args, '--intervals', quick ? '6' : '20'));
    const policy = arg(args, '--policy', 'predictive') as RunSpec['policy'];
    // Unequal volumes: each writes 15% less than the one before (the fourth about half the first).
    const rates = Array.from({ length: volumes }, (_, i) => 0.9 * MiB * Math.max(0.1, 1 - 0.15 * i));
    const linkCap = Math.round(Number(arg(args, '--cap-x', '3')) * rates.reduce((a, b) => a + b, 0));
    const rpoTargetMs = Math.round(Number(arg(args, '--rpo-x', '1.5')) * intervalMs);
    const spec = { volumes, intervalMs, intervals, rates, rpoTargetMs, policy, log };
    log(`  ${volumes} volumes writing ${rates.map((r) => (r / 1e6).toFixed(2)).join(', ')} MB/s; a point every ${intervalMs / 1000} s, RPO target ${rpoTargetMs / 1000} s; ${policy}; ${intervals} intervals per run`);
    // Two pairs. Without a cap, the link (loopback) carries whatever the volumes send when
    // they send it: its peak is their demand, which a site's link must be sized for. Under a
    // cap, the peak is the cap's whenever a burst fills it; the cost of coinciding bursts
    // shows as lag instead, and as recovery-point targets missed.
    const runs: Record<string, RunFigures> = {};
    for (const [name, cap, level] of [['uncapped aligned', null, false], ['uncapped leveled', null, true], ['capped aligned', linkCap, false], ['capped leveled', linkCap, true]] as const) {
      const r = await runOnce({ ...spec, linkCap: cap, level });
      runs[name] = r;
      log(`  ${name}: peak ${(r.peak_bytes_per_s / 1e6).toFixed(2)} MB/s, mean ${(r.mean_bytes_per_s / 1e6).toFixed(2)} MB/s, lag mean ${r.lag_mean_s} s, ${r.targets_missed} targets missed; offsets ${JSON.stringify(r.offsets_ms)}`);
    }
    const mb = (x: number) => round(x / 1e6, 2);
    const table: (string | number)[][] = [
      ['run', 'link peak MB/s', 'link mean MB/s', 'written MB/s', 'points', 'lag mean s', 'lag max s', 'RPO age max s', 'targets missed'],
      ...Object.entries(runs).map(([name, r]) => [name, mb(r.peak_bytes_per_s), mb(r.mean_bytes_per_s), mb(r.written_bytes_per_s), r.points_committed, r.lag_mean_s, r.lag_max_s, r.rpo_age_max_s, r.targets_missed]),
    ];
    const ratio = (a: RunFigures, b: RunFigures) => (b.peak_bytes_per_s > 0 ? a.peak_bytes_per_s / b.peak_bytes_per_s : 1);
    const peakRatio = ratio(runs['uncapped leveled'], runs['uncapped aligned']);
    const window = intervalMs / volumes / 1000;
    return {
      table,
      json: {
        volumes,
        interval_s: intervalMs / 1000,
        intervals,
        policy,
        write_rates_bytes_per_s: rates.map(Math.round),
        link_cap_bytes_per_s: linkCap,
        rpo_target_s: rpoTargetMs / 1000,
        peak_window_s: window,
        uncapped: { aligned: runs['uncapped aligned'], leveled: runs['uncapped leveled'] },
        capped: { aligned: runs['capped aligned'], leveled: runs['capped leveled'] },
        peak_load_ratio: round(peakRatio, 3),
        peak_load_ratio_capped: round(ratio(runs['capped leveled'], runs['capped aligned']), 3),
        targets_missed_aligned: runs['uncapped aligned'].targets_missed + runs['capped aligned'].targets_missed,
        targets_missed: runs['uncapped leveled'].targets_missed + runs['capped leveled'].targets_missed,
      },
      notes: [
        `peak_load_ratio = leveled / aligned link peak without a cap = ${peakRatio.toFixed(3)} (peak: payload bytes on the link over any ${window.toFixed(2)} s window, interval / volumes)`,
        `under the ${(linkCap / 1e6).toFixed(2)} MB/s cap: peak ratio ${ratio(runs['capped leveled'], runs['capped aligned']).toFixed(3)}, lag mean ${runs['capped aligned'].lag_mean_s} s aligned against ${runs['capped leveled'].lag_mean_s} s leveled`,
        `targets_missed counts, in both leveled runs, each time a volume's recovery point grew older than ${rpoTargetMs / 1000} s (the RPO target); the aligned runs missed ${runs['uncapped aligned'].targets_missed + runs['capped aligned'].targets_missed}`,
        `the leveled runs' offsets (ms after the clock's marks): ${Object.entries(runs['capped leveled'].offsets_ms).map(([k, v]) => `${k} ${v}`).join(', ')}`,
      ],
    };
  },
});
