/** Spawns the replication runner scripts as separate processes and reads their JSON-line events. */
import { spawn, type ChildProcess } from 'node:child_process';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';

export interface Ev {
  event: string;
  /** When this process read the line (Date.now()): orders both sides' events in one log. */
  receivedAt?: number;
  [k: string]: unknown;
}

export class Proc {
  readonly events: Ev[] = [];
  private readonly waiters = new Set<() => void>();
  readonly child: ChildProcess;
  stderr = '';
  exited = false;

  constructor(script: 'replica-runner.ts' | 'source-runner.ts', config: Record<string, unknown>) {
    const path = fileURLToPath(new URL(`./${script}`, import.meta.url));
    this.child = spawn(process.execPath, ['--import', 'tsx', path, JSON.stringify(config)], { stdio: ['ignore', 'pipe', 'pipe'] });
    createInterface({ input: this.child.stdout! }).on('line', (l) => {
      try {
        this.events.push({ ...(JSON.parse(l) as Ev), receivedAt: Date.now() });
      } catch {
        this.stderr += `(stdout) ${l}\n`;
      }
      for (const w of [...this.waiters]) w();
    });
    this.child.stderr!.on('data', (d: Buffer) => (this.stderr += d.toString()));
    this.child.on('exit', () => {
      this.exited = true;
      for (const w of [...this.waiters]) w();
    });
  }

  /** Resolves with the first event (from the start) matching `pred`. */
  waitFor(pred: (e: Ev) => boolean, timeoutMs = 30_000, what = 'event'): Promise<Ev> {
    return new Promise((resolve, reject) => {
      const check = () => {
        const e = this.events.find(pred);
        if (e) {
          this.waiters.delete(check);
          clearTimeout(t);
          resolve(e);
        } else if (this.exited) {
          this.waiters.delete(check);
          clearTimeout(t);
          reject(new Error(`process exited before ${what}; stderr:\n${this.stderr.slice(-3000)}`));
        }
      };
      const t = setTimeout(() => {
        this.waiters.delete(check);
        reject(new Error(`timed out waiting for ${what}; last events:\n${this.events.slice(-8).map((e) => JSON.stringify(e)).join('\n')}\nstderr:\n${this.stderr.slice(-3000)}`));
      }, timeoutMs);
      this.waiters.add(check);
      check();
    });
  }

  kill9(): Promise<void> {
    if (this.exited) return Promise.resolve();
    const done = new Promise<void>((r) => this.child.once('exit', () => r()));
    this.child.kill('SIGKILL');
    return done;
  }

  async stop(): Promise<void> {
    if (this.exited) return;
    const done = new Promise<void>((r) => this.child.once('exit', () => r()));
    this.child.kill('SIGTERM');
    const t = setTimeout(() => this.child.kill('SIGKILL'), 5_000);
    await done;
    clearTimeout(t);
  }
}

/** Every 'committed' (or 'recovered', after a restart) hash on the replica equals the source's hash of that volume's point. */
export function checkInvariant(sourceEvents: readonly Ev[], replicaEvents: readonly Ev[]): { checked: number; mismatches: string[] } {
  const key = (e: Ev, n: number) => `${String(e.volume ?? '')}:${n}`;
  const src = new Map<string, string>();
  for (const e of sourceEvents) if (e.event === 'closed') src.set(key(e, e.n as number), e.hash as string);
  let checked = 0;
  const mismatches: string[] = [];
  for (const e of replicaEvents) {
    const n = e.event === 'committed' || e.event === 'recovered' ? (e.n as number | null) : null;
    if (n === null || typeof e.hash !== 'string') continue;
    const want = src.get(key(e, n));
    if (want === undefined) continue;
    checked++;
    if (want !== e.hash) mismatches.push(`${e.volume ? `volume ${String(e.volume)} ` : ''}point ${n}: replica ${e.hash.slice(0, 12)} source ${want.slice(0, 12)}`);
  }
  return { checked, mismatches };
}
