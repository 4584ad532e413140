/**
 * bench:replay — the real engine against the trace evaluator on the same trace.
 *
 * A real source and replica node on loopback (real volumes, NBD, the WebSocket link with a
 * rate limit, the predictive planner in the shipper) replay a trace's writes through NBD,
 * time compressed by --speedup (default 10); points close at trace start + k * interval /
 * speedup. The planner in the engine runs on the workload's time (its clock scaled by the speedup), so
 * it plans as on the real volume. The engine's own figures (completion lag from its
 * acknowledgements, bytes sent against the minimal bytes) are scaled back to trace time and
 * set beside what the evaluator (@headstart/sim, the same planner code over a link model)
 * computes for the same writes, interval and link, point by point.
 *
 * The link: the engine's rate limiter is a token bucket; an idle link passes its burst at
 * once. The evaluator's link here has the same burst (constantLink(rate, burst), the burst
 * read off replication's TokenBucket at the replay's wall-clock rate); its default sweep
 * uses a plain link. The bucket's burst is wall-clock time (RATE_BURST_SECONDS of the rate),
 * so in trace time it is speedup x longer: one reason the speedup must stay moderate.
 *
 * The trace's address space is packed to the 1 MiB regions it touches (compactWorkload):
 * the planner decides the same, and the replica's image is hundreds of MiB, not 32 GiB.
 *
 * Flags: --trace FILE (default the shared CloudPhysics trace), --speedup 10,
 * --interval SECONDS (trace time, default 300), --link-x 2 (link / mean write rate),
 * --minutes M (trace minutes replayed; default 20 quick, 60 full).
 */
import { mkdtemp, readFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { runDemo, silentLogger, type TraceWrite } from '@headstart/node';
import { compactWorkload, constantLink, historyFor, loadWorkloads, meanWriteRate, simulate, sliceWorkload, summarise, type Workload } from '@headstart/sim';
import { MAX_BLOCKS_FRAME } from '@headstart/protocol';
import { TokenBucket } from '@headstart/replication';
import { HeadstartError } from '@headstart/errors';
import { defineSuite, round, arg, skippedNote, TRACE_READ_FLAGS, traceReadOptions } from './lib';

/**
 * The writes the engine's NBD export received, as a workload in trace time: the recorder
 * writes epoch ms (its first line gives the origin; the reader rebases to the first record),
 * mapped as (t - startedAt) x speedup. Same address space as `like` (the replay wrote the
 * packed workload), so its volume size and duration carry over.
 */
async function receivedWorkload(path: string, startedAt: number, speedup: number, like: Workload): Promise<Workload> {
  const text = await readFile(path, 'utf8');
  const first = text.split('\n').find((l) => l !== '' && !l.startsWith('#'));
  if (first === undefined) throw new Error(`the replay recorded no writes in ${path}`);
  const originMs = Number(first.split(',')[0]);
  const [r] = await loadWorkloads(path, 'as received');
  const shift = ((originMs - startedAt) / 1000) * speedup;
  const time = Float64Array.from(r.time, (t) => shift + t * speedup);
  return { ...r, time, duration: like.duration, volumeSize: like.volumeSize };
}

const SHARED = new URL('../../shared/traces/', import.meta.url).pathname;

function* writesOf(w: Workload): Generator<TraceWrite> {
  for (let i = 0; i < w.count; i++) yield { time: w.time[i], offset: w.offset[i], length: w.length[i] };
}

const mean = (xs: number[]) => (xs.length === 0 ? 0 : xs.reduce((a, b) => a + b, 0) / xs.length);

export default defineSuite({
  name: 'replay',
  description: 'a real source -> replica pair replays a trace, time-compressed, against the evaluator',
  flags: {
    '--trace': 'FILE: the trace to replay (default ../shared/traces/cloudphysics-vm.vscsi)',
    '--disk': 'ID: the disk of a multi-disk trace to replay (default: the first)',
    '--speedup': 'time compression (default 10)',
    '--interval': 's: the snapshot interval in trace time (default 300)',
    '--link-x': 'the link, as a multiple of the trace\'s mean write rate (default 2)',
    '--minutes': 'minutes of the trace replayed (default 60, 20 with --quick)',
    '--policy': 'predictive (default), continuous or at-snapshot',
    ...TRACE_READ_FLAGS,
  },
  async run({ quick, args, log }) {
    const trace = arg(args, '--trace', join(SHARED, 'cloudphysics-vm.vscsi'));
    // Time compression multiplies the engine's fixed wall-clock costs (the replica's commit of a
    // big point, its fsyncs) by the speedup: on the quick run the lags differed by 15-23% at
    // 30x, by 2-6% at 10x. Both runs use 10x (quick about 2 min, full about 6 min).
    const speedup = Number(arg(args, '--speedup', '10'));
    const interval = Number(arg(args, '--interval', '300'));
    const linkX = Number(arg(args, '--link-x', '2'));
    const minutes = Number(arg(args, '--minutes', quick ? '20' : '60'));
    const read = traceReadOptions(args);
    const disks = await loadWorkloads(trace, trace.split('/').at(-1)!, { ...read, onSkipped: (n, problems) => log(`  ${skippedNote(trace, n, problems)}`) });
    if (disks.length === 0) throw new HeadstartError('TRACE_MALFORMED', `${trace} has no writes${read.volume === undefined ? '' : ` on disk ${read.volume}`}: nothing to replay`);
    // A multi-disk trace's disks are separate volumes: one is replayed, and the log says which.
    if (disks.length > 1) log(`  the trace has ${disks.length} disks (${disks.map((d) => d.name).join(', ')}): replaying ${disks[0].name} (--disk picks another)`);
    const whole = disks[0];
    const w = compactWorkload(sliceWorkload(whole, minutes * 60));
    const rate = meanWriteRate(w);
    log(`  ${w.name}: ${w.count} writes, mean ${(rate / 1e6).toFixed(3)} MB/s; link ${linkX}x; interval ${interval} s; replay at ${speedup}x`);

    // The engine's link is a token bucket (replication's rate limiter): after idling it takes
    // its burst at once. The evaluator models the same link, with the burst the engine's
    // bucket has at the replay's wall-clock rate (read off a bucket that never refills: what
    // it lets go at once). The burst is sized in wall-clock time, so in trace time it grows
    // with the speedup; on a plain (fluid) link the evaluator sees up to burst / rate s more
    // lag per point.
    const burst = new TokenBucket(rate * linkX * speedup, MAX_BLOCKS_FRAME, () => 0).available();
    log(`  engine link: token bucket, burst ${(burst / 2 ** 20).toFixed(2)} MiB = ${(burst / (rate * linkX)).toFixed(1)} s of link time in the trace`);
    const link = constantLink(rate * linkX, burst);
    const fluid = summarise(simulate(w, { interval, link: constantLink(rate * linkX), policy: 'predictive', history: historyFor(w, interval) }).snapshots);
    const history = historyFor(w, interval);
    const simRun = simulate(w, { interval, link, policy: 'predictive', history });
    const sim = summarise(simRun.snapshots);
    const oracle = summarise(simulate(w, { interval, link, policy: 'oracle', history }).snapshots);
    log(`  evaluator: predictive lag mean ${sim.lag_mean_s.toFixed(1)} s, redundancy ${sim.redundancy_mean.toFixed(4)}`);

    const recordPath = join(await mkdtemp(join(tmpdir(), 'hs-replay-')), 'received.trace');
    const engine = await runDemo({
      record: recordPath,
      forMs: (w.duration * 1000) / speedup + 1000,
      intervalMs: (interval * 1000) / speedup,
      linkRate: rate * linkX * speedup,
      volumeSize: Math.max(w.volumeSize, 1 << 20),
      trace: { writes: writesOf(w), speedup },
      alignToWorkload: true,
      dashboard: false,
      policy: arg(args, '--policy', 'predictive') as 'predictive' | 'continuous' | 'at-snapshot',
      signal: new AbortController().signal,
      logger: silentLogger(),
    });
    // The points the trace's own schedule closed (the last, manual point of the run is not one).
    const closes = simRun.snapshots.length;
    // Matched by scheduled time, not by number: the engine's schedule also closes an (empty)
    // point at the workload's start, so its numbers run one ahead of the evaluator's.
    // The run's last, manual point (taken when the workload stops) is no scheduled point.
    const points = engine.points
      .map((p) => ({ ...p, at: ((p.scheduled_at - engine.started_at) / 1000) * speedup }))
      .map((p) => ({ ...p, n: Math.round(p.at / interval) }))
      .filter((p, i, all) => p.n >= 1 && p.n <= closes && Math.abs(p.at - p.n * interval) < interval * 0.05 && all.findIndex((q) => q.n === p.n) === i)
      .sort((a, b) => a.n - b.n);
    const lagTrace = points.map((p) => p.lag_s * speedup);
    // Of each lag, the replica's commit as the source saw it (CLOSE sent -> ACK): a wall-clock
    // cost the evaluator counts as zero and the time compression multiplies by the speedup.
    const commitTrace = points.map((p) => (p.commit_s ?? 0) * speedup);
    // The same evaluator on the writes as the engine's NBD export received them (its recorder,
    // epoch ms, mapped to trace time): the replay's client falls behind the trace in a burst
    // (hundreds of MiB in a few trace seconds at this speedup), so some writes land in a later
    // point than in the trace. Against these writes the engine and the evaluator see the same
    // points, which isolates what the comparison is for: planner and link, engine against model.
    const received = await receivedWorkload(recordPath, engine.started_at, speedup, w);
    const recvRun = simulate(received, { interval, link, policy: 'predictive', history: historyFor(received, interval) });
    const recv = summarise(recvRun.snapshots.slice(0, closes));
    const recvLag = recv.lag_mean_s;
    const recvLagDiff = Math.abs(mean(lagTrace) - recvLag) / Math.max(recvLag, interval * 0.05);
    const movedBytes = recvRun.snapshots.slice(0, closes).reduce((a, s, i) => a + Math.abs(s.M - (simRun.snapshots[i]?.M ?? 0)), 0) / 2;
    log(`  evaluator on the writes as received: lag mean ${recvLag.toFixed(1)} s, redundancy ${recv.redundancy_mean.toFixed(4)}; ${(movedBytes / 2 ** 20).toFixed(1)} MiB of writes landed in another point than in the trace`);
    // The run's last point is taken after the workload stopped (nothing written since the
    // last scheduled close): its lag is the engine's own latency per point (close, CLOSE,
    // the replica's crash-safe commit, ACK) in wall-clock time, which the evaluator counts
    // as zero and the time compression multiplies by the speedup.
    // Measured from the later of its scheduled time and the previous point's ACK (a backlog
    // may still have been on the link when it was taken).
    const last = engine.points.find((p) => p.n === engine.last_point);
    const prev = engine.points.filter((p) => p.n !== engine.last_point).reduce((a, p) => Math.max(a, p.scheduled_at + p.lag_s * 1000), 0);
    const fixedMs = last !== undefined && last.minimal_bytes === 0 ? last.scheduled_at + last.lag_s * 1000 - Math.max(last.scheduled_at, prev) : null;
    const withBytes = points.filter((p) => p.minimal_bytes > 0);
    const redundancy = withBytes.length ? mean(withBytes.map((p) => p.sent_bytes / p.minimal_bytes)) : 1;
    const engineLag = mean(lagTrace);
    const simLag = sim.lag_mean_s;
    // Agreement is judged on the scale of the interval: a lag of 2 s against 1 s is not "100% off".
    const lagDiff = Math.abs(engineLag - simLag) / Math.max(simLag, interval * 0.05);
    const redDiff = Math.abs(redundancy - sim.redundancy_mean) / sim.redundancy_mean;
    const pct = (x: number) => `${(x * 100).toFixed(1)}%`;
    const table: (string | number)[][] = [
      ['figure (trace time)', 'evaluator', 'engine', 'difference'],
      ['points', closes, points.length, '-'],
      ['lag mean, s', round(simLag, 2), round(engineLag, 2), pct(lagDiff)],
      ['lag max, s', round(Math.max(0, ...simRun.snapshots.map((s) => s.lag)), 2), round(Math.max(0, ...lagTrace), 2), '-'],
      ['redundancy mean', round(sim.redundancy_mean, 4), round(redundancy, 4), pct(redDiff)],
      ['oracle lag mean, s', round(oracle.lag_mean_s, 2), '-', '-'],
      ['lag mean, evaluator on the writes as the engine received them, s', round(recvLag, 2), round(engineLag, 2), pct(recvLagDiff)],
      ['redundancy mean, evaluator on the writes as received', round(recv.redundancy_mean, 4), round(redundancy, 4), pct(Math.abs(redundancy - recv.redundancy_mean) / recv.redundancy_mean)],
      ['replica commit per point (CLOSE -> ACK), mean, s', 0, round(mean(commitTrace), 2), '-'],
      ['lag mean less the replica commit, s', round(simLag, 2), round(engineLag - mean(commitTrace), 2), pct(Math.abs(engineLag - mean(commitTrace) - simLag) / Math.max(simLag, interval * 0.05))],
      ['lag mean, evaluator on a fluid link (no burst), s', round(fluid.lag_mean_s, 2), round(engineLag, 2), pct(Math.abs(engineLag - fluid.lag_mean_s) / Math.max(fluid.lag_mean_s, interval * 0.05))],
    ];
    const perPoint = simRun.snapshots.map((s) => {
      const e = points.find((p) => p.n === s.n);
      return `n=${s.n}: lag ${s.lag.toFixed(1)} / ${e ? (e.lag_s * speedup).toFixed(1) : '-'} s (commit ${e?.commit_s != null ? (e.commit_s * speedup).toFixed(1) : '-'} s), M ${(s.M / 2 ** 20).toFixed(3)} / ${e ? (e.minimal_bytes / 2 ** 20).toFixed(3) : '-'} MiB, S/M ${s.M > 0 ? (s.S / s.M).toFixed(4) : '-'} / ${e && e.minimal_bytes > 0 ? (e.sent_bytes / e.minimal_bytes).toFixed(4) : '-'}`;
    });
    return {
      table,
      json: {
        trace: w.name,
        speedup,
        interval_s: interval,
        link_x: linkX,
        points_engine: points.length,
        points_evaluator: closes,
        lag_mean_s_engine: round(engineLag, 3),
        lag_mean_s_evaluator: round(simLag, 3),
        lag_difference: round(lagDiff, 3),
        lag_mean_s_evaluator_as_received: round(recvLag, 3),
        lag_difference_as_received: round(recvLagDiff, 3),
        commit_mean_s_engine: round(mean(commitTrace), 3),
        redundancy_evaluator_as_received: round(recv.redundancy_mean, 4),
        bytes_in_another_point: Math.round(movedBytes),
        redundancy_engine: round(redundancy, 4),
        redundancy_evaluator: round(sim.redundancy_mean, 4),
        redundancy_difference: round(redDiff, 4),
        replica_equal: engine.replica_equal,
        link_burst_bytes: burst,
        engine_empty_point_ms: fixedMs === null ? null : round(fixedMs, 1),
      },
      notes: [
        `engine lag = acknowledgement time minus scheduled time, x${speedup}; the lag difference is relative to the evaluator's lag (floored at 5% of the interval).`,
        `per point, evaluator / engine: ${perPoint.join('; ')}`,
        fixedMs === null
          ? 'engine latency of an empty point: not measured (the last point was not empty)'
          : `engine latency of an empty point (close -> commit -> ACK): ${fixedMs.toFixed(0)} ms wall = ${((fixedMs * speedup) / 1000).toFixed(1)} s of trace time at ${speedup}x, which the evaluator counts as 0; a point with a large backlog also pays its commit (the replica writes and syncs every staged block) in wall time`,
        `replica equal to the source's last point after the replay: ${engine.replica_equal}`,
      ],
    };
  },
});
