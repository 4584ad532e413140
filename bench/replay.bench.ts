/**
 * bench:replay — the real engine against the trace evaluator on the same trace.
 *
 * A real source and replica node on loopback (real volumes, NBD, the WebSocket link with a
 * rate limit, the predictive planner in the shipper) replay a trace's writes through NBD,
 * time compressed by --speedup; points close at trace start + k * interval / speedup.
 * The engine's own figures (completion lag from its acknowledgements, bytes sent against
 * the minimal bytes) are scaled back to trace time and set beside what the evaluator
 * (@headstart/sim, the same planner code over a link model) computes for the same slice,
 * interval and link.
 *
 * Flags: --trace FILE (default the shared CloudPhysics trace), --speedup 60,
 * --interval SECONDS (trace time, default 300), --link-x 2 (link / mean write rate),
 * --minutes M (trace minutes replayed; default 20 quick, 60 full).
 */
import { join } from 'node:path';
import { runDemo, silentLogger, type TraceWrite } from '@headstart/node';
import { evaluate, loadWorkloads, meanWriteRate, sliceWorkload, type Workload } from '@headstart/sim';
import { defineSuite, round } from './lib';

const SHARED = new URL('../../shared/traces/', import.meta.url).pathname;

function arg(args: readonly string[], name: string, fallback: string): string {
  const i = args.indexOf(name);
  return i >= 0 && args[i + 1] !== undefined ? args[i + 1] : fallback;
}

function* writesOf(w: Workload): Generator<TraceWrite> {
  for (let i = 0; i < w.count; i++) yield { time: w.time[i], offset: w.offset[i], length: w.length[i] };
}

const mean = (xs: number[]) => (xs.length === 0 ? 0 : xs.reduce((a, b) => a + b, 0) / xs.length);

export default defineSuite({
  name: 'replay',
  description: 'a real source -> replica pair replays a trace, time-compressed, against the evaluator',
  async run({ quick, args, log }) {
    const trace = arg(args, '--trace', join(SHARED, 'cloudphysics-vm.vscsi'));
    const speedup = Number(arg(args, '--speedup', '60'));
    const interval = Number(arg(args, '--interval', '300'));
    const linkX = Number(arg(args, '--link-x', '2'));
    const minutes = Number(arg(args, '--minutes', quick ? '20' : '60'));
    const [whole] = await loadWorkloads(trace, trace.split('/').at(-1)!);
    const w = sliceWorkload(whole, minutes * 60);
    const rate = meanWriteRate(w);
    log(`  ${w.name}: ${w.count} writes, mean ${(rate / 1e6).toFixed(3)} MB/s; link ${linkX}x; interval ${interval} s; replay at ${speedup}x`);

    const sim = evaluate(w, interval, linkX, { policies: ['predictive', 'oracle'] });
    log(`  evaluator: predictive lag mean ${sim.policies.predictive.lag_mean_s.toFixed(1)} s, redundancy ${sim.policies.predictive.redundancy_mean.toFixed(4)}`);

    const engine = await runDemo({
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
    const closes = Math.floor(w.duration / interval);
    const points = engine.points.filter((p) => p.n >= 1 && p.n <= closes);
    const lagTrace = points.map((p) => p.lag_s * speedup);
    const withBytes = points.filter((p) => p.minimal_bytes > 0);
    const redundancy = withBytes.length ? withBytes.reduce((a, p) => a + p.sent_bytes, 0) / withBytes.reduce((a, p) => a + p.minimal_bytes, 0) : 1;
    const engineLag = mean(lagTrace);
    const simLag = sim.policies.predictive.lag_mean_s;
    // Agreement is judged on the scale of the interval: a lag of 2 s against 1 s is not "100% off".
    const lagDiff = Math.abs(engineLag - simLag) / Math.max(simLag, interval * 0.05);
    const table = [
      ['figure (trace time)', 'evaluator', 'engine', 'difference'],
      ['points', sim.snapshots, points.length, '-'],
      ['lag mean, s', round(simLag, 2), round(engineLag, 2), `${(lagDiff * 100).toFixed(1)}%`],
      ['lag max, s', round(sim.policies.predictive.lag_p99_s, 2), round(Math.max(0, ...lagTrace), 2), '-'],
      ['redundancy mean', round(sim.policies.predictive.redundancy_mean, 4), round(redundancy, 4), `${((Math.abs(redundancy - sim.policies.predictive.redundancy_mean) / sim.policies.predictive.redundancy_mean) * 100).toFixed(1)}%`],
      ['oracle lag mean, s', round(sim.policies.oracle.lag_mean_s, 2), '-', '-'],
    ];
    return {
      table,
      json: {
        trace: w.name,
        speedup,
        interval_s: interval,
        link_x: linkX,
        points_engine: points.length,
        points_evaluator: sim.snapshots,
        lag_mean_s_engine: round(engineLag, 3),
        lag_mean_s_evaluator: round(simLag, 3),
        lag_difference: round(lagDiff, 3),
        redundancy_engine: round(redundancy, 4),
        redundancy_evaluator: round(sim.policies.predictive.redundancy_mean, 4),
        replica_equal: engine.replica_equal,
      },
      notes: [
        `engine lag = acknowledgement time minus scheduled time, x${speedup}; the difference column is relative to the evaluator's lag (floored at 5% of the interval).`,
        `replica equal to the source's last point after the replay: ${engine.replica_equal}`,
      ],
    };
  },
});
