/**
 * One run of the evaluator: the four policies over the same workload, interval and link, and
 * the `plain` reference planner (plain.ts) beside them.
 */
import { POLICIES, type PlannerOptions, type Policy } from '@headstart/planner';
import { summarise, type PolicyFigures } from './figures';
import { constantLink, type LinkModel } from './link';
import { historyFor, simulate, type SimOptions } from './simulate';
import type { Workload } from './workload';

export interface Evaluation {
  readonly trace: string;
  readonly interval_s: number;
  readonly link_x: number;
  readonly link: string;
  readonly snapshots: number;
  readonly policies: Record<Policy, PolicyFigures>;
  /** The reference planner, when asked for (`plain: true`). */
  readonly plain?: PolicyFigures;
  /** Peak planner memory (predictive), bytes. */
  readonly plannerMemoryBytes: number;
}

/** The trace's mean write rate: request bytes written / trace duration. */
export function meanWriteRate(w: Workload): number {
  return w.writtenBytes / Math.max(1, w.duration);
}

export interface EvaluateOptions {
  readonly link?: (bytesPerSecond: number) => LinkModel;
  /** Planner option overrides. */
  readonly planner?: Partial<PlannerOptions>;
  readonly policies?: readonly Policy[];
  /** Also run the `plain` reference planner. */
  readonly plain?: boolean;
  /** Restart the predictive planner periodically (see SimOptions.restart). */
  readonly restart?: SimOptions['restart'];
  /** Told after every tick of each policy's run how much of the trace it has replayed (0..1). */
  readonly onProgress?: (policy: Policy | 'plain', done: number) => void;
}

export function evaluate(w: Workload, interval: number, linkX: number, options: EvaluateOptions = {}): Evaluation {
  const link = (options.link ?? constantLink)(meanWriteRate(w) * linkX);
  const history = historyFor(w, interval);
  const policies = {} as Record<Policy, PolicyFigures>;
  let memory = 0;
  let snapshots = 0;
  const progress = (policy: Policy | 'plain') => (options.onProgress === undefined ? {} : { onProgress: (now: number, until: number) => options.onProgress!(policy, Math.min(1, now / until)) });
  for (const policy of options.policies ?? POLICIES) {
    // Restarts cost only a planner that learns: the other policies would run the same.
    const r = simulate(w, { interval, link, policy, history, planner: options.planner, ...(policy === 'predictive' ? { restart: options.restart } : {}), ...progress(policy) });
    policies[policy] = summarise(r.snapshots);
    snapshots = r.snapshots.length;
    if (policy === 'predictive') memory = r.plannerMemoryBytes;
  }
  const plain = options.plain ? summarise(simulate(w, { interval, link, policy: 'plain', history, ...progress('plain') }).snapshots) : undefined;
  return { trace: w.name, interval_s: interval, link_x: linkX, link: link.name, snapshots, policies, ...(plain ? { plain } : {}), plannerMemoryBytes: memory };
}
