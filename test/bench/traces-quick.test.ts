/**
 * The trace evaluator's own command in CI (issue 10: "CI runs the evaluator in --quick mode
 * on a small trace"): `npm run bench:traces -- --quick --json --trace FILE` on a small
 * recording made here with the NBD recorder's format, read back by the trace reader like any
 * trace a user brings. Checks the JSON contract the issue fixes and the baselines every run
 * must beat; the lag target itself is the benchmark's to report, not a timed test's.
 */
import { execFile } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';
import { TraceRecorder } from '@headstart/traces';
import { tempDir } from '../helpers/tmp';

const root = join(import.meta.dirname, '..', '..');
const BS = 4096;

describe('npm run bench:traces -- --quick --json', () => {
  it('judges a recorded trace and prints the issue JSON', async () => {
    const dir = tempDir('hs-bench-traces-');
    const path = join(dir, 'small.csv');
    // Twenty minutes: a hot set rewritten all the time, a log appended and never rewritten,
    // and cold blocks written once.
    const rec = await TraceRecorder.open(path);
    let x = 7;
    const rnd = () => (x = (Math.imul(x, 1103515245) + 12345) >>> 0) / 2 ** 32;
    let head = 50_000;
    for (let t = 0; t < 1200; t += 0.2) {
      const at = 1_700_000_000_000 + t * 1000;
      rec.record({ time: at, op: 'write', offset: (100 + Math.floor(rnd() * 64)) * BS, length: BS });
      rec.record({ time: at, op: 'write', offset: head++ * BS, length: BS });
      if (rnd() < 0.3) rec.record({ time: at, op: 'write', offset: (10_000 + Math.floor(rnd() * 30_000)) * BS, length: BS });
    }
    await rec.close();

    const progress = /^ {2}\.\.\. small\.csv (60|300)s x2: (continuous|at-snapshot|predictive|oracle|plain) \(policy [1-5] of 5\) at \d+% of the trace, \d+ s into the run$/m;
    const bench = async (...more: string[]) => {
      const { stdout, stderr } = await promisify(execFile)(process.execPath, ['--import', 'tsx', join(root, 'bench', 'run.ts'), 'traces', '--quick', '--json', '--trace', path, ...more], { cwd: root, maxBuffer: 1 << 24 });
      return { json: stdout.trim().split('\n').at(-1)!, stderr };
    };
    // Two runs at once in worker threads, and one after another in the main thread: the same
    // figures. Both say how far a run still going is (every 30 s by default: here 0.05 s).
    const [parallel, serial] = [await bench('--jobs', '2', '--progress', '0.05'), await bench('--jobs', '1', '--progress', '0.05')];
    expect(parallel.json).toBe(serial.json);
    expect(parallel.stderr).toMatch(progress);
    expect(serial.stderr).toMatch(progress);
    expect((await bench('--jobs', '1', '--interval', '60', '--progress', '0')).stderr).not.toContain(' of the trace, ');
    const j = JSON.parse(parallel.json) as { runs: { trace: string; interval_s: number; link_x: number; policies: Record<string, Record<string, number>> }[] };
    expect(j.runs.map((r) => [r.interval_s, r.link_x])).toEqual([
      [60, 2],
      [300, 2],
    ]);
    for (const r of j.runs) {
      expect(r.trace).toBe('small.csv');
      expect(Object.keys(r.policies).sort()).toEqual(['at-snapshot', 'continuous', 'oracle', 'predictive']);
      for (const f of Object.values(r.policies)) expect(Object.keys(f).sort()).toEqual(['lag_mean_s', 'lag_p50_s', 'lag_p99_s', 'redundancy_mean', 'redundancy_p99']);
      const { predictive, oracle, continuous } = r.policies;
      expect(oracle.redundancy_mean).toBe(1);
      expect(predictive.redundancy_mean).toBeLessThanOrEqual(1.01);
      expect(predictive.redundancy_mean).toBeLessThan(continuous.redundancy_mean);
      expect(predictive.lag_mean_s).toBeLessThan(r.policies['at-snapshot'].lag_mean_s);
    }
  }, 120_000);

  it('lists its flags on --help, and refuses one it does not know instead of running the whole sweep', async () => {
    const run = (args: string[]) =>
      promisify(execFile)(process.execPath, ['--import', 'tsx', join(root, 'bench', 'run.ts'), 'traces', ...args], { cwd: root }).then(
        (r) => ({ code: 0, ...r }),
        (e: { code: number; stdout: string; stderr: string }) => ({ code: e.code, stdout: e.stdout, stderr: e.stderr }),
      );
    const help = await run(['--help']);
    expect(help.code).toBe(0);
    for (const flag of ['--trace', '--interval', '--link-x', '--planner', '--gaps', '--jobs', '--progress']) expect(help.stdout).toContain(flag);
    const noJobs = await run(['--quick', '--jobs', '0']);
    expect(noJobs.code).toBe(1);
    expect(noJobs.stderr).toContain('--jobs takes a whole number of runs at once (1 or more), not 0');
    const typo = await run(['--quick', '--intervals', '60']);
    expect(typo.code).toBe(2);
    expect(typo.stderr).toContain('unknown flag --intervals for traces');
    for (const flag of ['--format', '--lenient', '--disk']) expect(help.stdout).toContain(flag);
  }, 60_000);

  it('names the file and line of a malformed trace without a stack, skips it with --lenient, and names a trace\'s disks', async () => {
    const run = (args: string[]) =>
      promisify(execFile)(process.execPath, ['--import', 'tsx', join(root, 'bench', 'run.ts'), 'traces', '--interval', '60', '--link-x', '2', '--jobs', '1', ...args], { cwd: root }).then(
        (r) => ({ code: 0, ...r }),
        (e: { code: number; stdout: string; stderr: string }) => ({ code: e.code, stdout: e.stdout, stderr: e.stderr }),
      );
    const dir = await mkdtemp(join(tmpdir(), 'hs-bad-trace-'));
    try {
      // MSR Cambridge layout, 10 minutes of writes on disk 0, the 100th line a typo deep in the file.
      const lines = Array.from({ length: 600 }, (_, i) => `${128166372003061629 + i * 1e7},hm,0,${i === 99 ? 'Wrte' : 'Write'},${(i % 97) * 4096},4096,26`);
      const path = join(dir, 'typo.csv');
      await writeFile(path, lines.join('\n') + '\n');
      const strict = await run(['--trace', path]);
      expect(strict.code).toBe(1);
      expect(strict.stderr).toContain(`TRACE_MALFORMED: ${path}: msr trace, line 100: unknown operation "Wrte"`);
      expect(strict.stderr).not.toMatch(/^\s+at /m);
      const lenient = await run(['--trace', path, '--lenient', '--json']);
      expect(lenient.code, lenient.stderr).toBe(0);
      expect(lenient.stderr).toContain('typo.csv: skipped 1 malformed record(s) (--lenient): line 100: unknown operation "Wrte"');
      expect((JSON.parse(lenient.stdout.trim().split('\n').at(-1)!) as { runs: unknown[] }).runs).toHaveLength(1);
      const otherDisk = await run(['--trace', path, '--lenient', '--disk', '3']);
      expect(otherDisk.stderr).toContain(`CONFIG_INVALID: ${path} has no writes on disk 3; disks with writes: 0`);
      const asSpc = await run(['--trace', path, '--format', 'spc']);
      expect(asSpc.stderr).toContain(`TRACE_MALFORMED: ${path}: spc trace, line 1:`);
      const unknown = await run(['--trace', path, '--format', 'csv']);
      expect(unknown.stderr).toContain('--format takes one of vscsi, msr, spc, fiu, blkparse, alibaba, headstart, not "csv"');
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  }, 120_000);
});
