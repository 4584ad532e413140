/**
 * The `headstart` command as a user runs it: help everywhere, stable exit codes, clear
 * errors for bad configuration and for a node that is not running, and the README's main
 * job (`demo --for ... --json`) ending with a replica equal to its source.
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { runCli } from '../helpers/cli';
import { tempDir } from '../helpers/tmp';

describe('headstart CLI', () => {
  it('has --help on every command', async () => {
    for (const cmd of [[], ['demo'], ['serve'], ['status'], ['snapshot'], ['promote'], ['demote'], ['rate'], ['init', 'node'], ['init', 'volume'], ['pair', 'token'], ['pair', 'accept']]) {
      const r = await runCli([...cmd, '--help']);
      expect(r.code, cmd.join(' ')).toBe(0);
      expect(r.stdout).toMatch(/Usage: headstart/);
    }
    const top = await runCli(['--help']);
    expect(top.stdout).toContain('Exit codes');
  });

  it('exits 2 on bad usage and on a bad configuration, naming the key', async () => {
    expect((await runCli(['frobnicate'])).code).toBe(2);
    const dir = tempDir();
    const config = join(dir, 'bad.yaml');
    writeFileSync(config, 'node:\n  name: site-a\nvolumes:\n  - name: v\n    size: huge\n');
    const r = await runCli(['status', '-c', config]);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain('volumes[0].size: not a size');
    writeFileSync(config, 'node: [unclosed\n');
    const y = await runCli(['status', '-c', config]);
    expect(y.code).toBe(2);
    expect(y.stderr).toContain('not valid YAML');
  });

  it('exits 3 when the node is not running', async () => {
    const dir = tempDir();
    const config = join(dir, 'h.yaml');
    expect((await runCli(['init', 'node', 'site-x', '-c', config])).code).toBe(0);
    const r = await runCli(['status', '-c', config]);
    expect(r.code).toBe(3);
    expect(r.stderr).toContain('NODE_UNREACHABLE');
    expect((await runCli(['init', 'node', 'site-x', '-c', config])).code).toBe(2); // exists already
  });

  it('runs the demo for a bounded time and ends with an equal replica', async () => {
    const r = await runCli(['demo', '--for', '15s', '--json', '--interval', '3s'], { timeoutMs: 120_000 });
    expect(r.code, r.stderr).toBe(0);
    const j = JSON.parse(r.stdout.trim().split('\n').at(-1)!) as Record<string, unknown>;
    expect(j.replica_equal).toBe(true);
    expect(j.snapshots_committed as number).toBeGreaterThanOrEqual(3);
    expect(j.lag_mean_s as number).toBeGreaterThanOrEqual(0);
    expect((j.workload as { writes: number }).writes).toBeGreaterThan(0);
  }, 150_000);
});
