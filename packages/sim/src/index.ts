/**
 * @headstart/sim — the trace evaluator.
 *
 * DEV DOCS
 * `loadWorkloads(path)` reads any supported trace (via @headstart/traces) into compact,
 * time-sorted write arrays, one per volume. `simulate(workload, { interval, link, policy })`
 * replays it through @headstart/planner's VolumePlanner (the engine's own planner, no
 * second implementation) over a link model and returns per-snapshot figures (M, S, commit,
 * lag), judged independently from the trace's block history; `summarise` reduces them to
 * redundancy mean/p99 and lag mean/p50/p99. `evaluate` runs the four policies side by side
 * on one workload, interval and link, with `plain: true` also the reference planner
 * (plain.ts: a yardstick like the oracle, never run by the engine). bench/traces.bench.ts
 * sweeps these.
 */
export { loadWorkloads, sliceWorkload, compactWorkload, type LoadOptions, type Workload } from './workload';
export { BlockHistory } from './history';
export { constantLink, varyingLink, type LinkModel } from './link';
export { simulate, snapshotCount, historyFor, type SimOptions, type SimPolicy, type SimResult, type SnapshotFigures } from './simulate';
export { PlainPlanner, type PlainOptions } from './plain';
export { summarise, percentile, type PolicyFigures } from './figures';
export { evaluate, meanWriteRate, type Evaluation } from './evaluate';
