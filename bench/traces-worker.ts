/**
 * A worker of the trace evaluator (traces.bench.ts): runs evaluator runs it is sent, one at a
 * time, and posts each Evaluation back. Runs are independent and deterministic, so spread
 * over the machine's cores they give the same figures as one after another, sooner. It
 * loads each trace once (as the main thread did, read the same way) and keeps it.
 */
import { parentPort } from 'node:worker_threads';
import { basename } from 'node:path';
import type { PlannerOptions } from '@headstart/planner';
import type { TraceReadOptions } from '@headstart/traces';
import { constantLink, evaluate, loadWorkloads, varyingLink, type Evaluation, type Workload } from '@headstart/sim';

export interface RunTask {
  readonly id: number;
  readonly file: string;
  /** How the file is read (format, leniency, the disk kept): as the main thread read it. */
  readonly read: TraceReadOptions;
  /** Which of the file's workloads (one per disk). */
  readonly workload: number;
  readonly interval: number;
  readonly x: number;
  readonly varying: boolean;
  readonly planner: Partial<PlannerOptions> | undefined;
  readonly restart: { every: number; warm: boolean } | undefined;
  /** Wall-clock ms between progress reports of a run still going (--progress; Infinity: none). */
  readonly progressMs: number;
}

/** How far a run that is still going has got: the policy being replayed, and its share of the trace done (0..1). */
export interface RunProgress {
  readonly policy: string;
  readonly done: number;
}

export type RunAnswer =
  | { readonly id: number; readonly evaluation: Evaluation; readonly ms: number }
  | { readonly id: number; readonly error: string }
  | { readonly id: number; readonly progress: RunProgress };

/**
 * The one place a task becomes an Evaluation, in a worker or in the main thread. A run of a
 * week-long trace with a million blocks takes minutes per policy: it says how far it is every
 * `t.progressMs` of wall time, so that a long evaluation is not taken for a hung one.
 */
export function runTask(w: Workload, t: RunTask, onProgress?: (p: RunProgress) => void): Evaluation {
  let told = Date.now();
  const progress =
    onProgress === undefined
      ? undefined
      : (policy: string, done: number) => {
          const now = Date.now();
          if (now - told < t.progressMs) return;
          told = now;
          onProgress({ policy, done });
        };
  return evaluate(w, t.interval, t.x, { link: t.varying ? (b) => varyingLink(b) : constantLink, planner: t.planner, plain: true, restart: t.restart, onProgress: progress });
}

const loaded = new Map<string, Promise<Workload[]>>();

parentPort?.on('message', (t: RunTask) => {
  void (async () => {
    try {
      const key = `${t.file}\0${JSON.stringify(t.read)}`;
      if (!loaded.has(key)) loaded.set(key, loadWorkloads(t.file, basename(t.file), t.read));
      const w = (await loaded.get(key)!)[t.workload];
      const started = Date.now();
      const evaluation = runTask(w, t, (progress) => parentPort!.postMessage({ id: t.id, progress } satisfies RunAnswer));
      parentPort!.postMessage({ id: t.id, evaluation, ms: Date.now() - started } satisfies RunAnswer);
    } catch (err) {
      parentPort!.postMessage({ id: t.id, error: (err as Error)?.stack ?? String(err) } satisfies RunAnswer);
    }
  })();
});
