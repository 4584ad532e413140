/**
 * The `headstart` command as a user runs it: help everywhere, stable exit codes, clear
 * errors for bad configuration and for a node that is not running, and the README's main
 * job (`demo --for ... --json`) ending with a replica equal to its source.
 */
import { X509Certificate } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { parse as parseYaml, stringify as stringifyYaml } from 'yaml';
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

  it('init node takes --data from where it runs, like any path on a command line', async () => {
    // `init node -c a/a.yaml --data a/data` wrote dataDir: a/data, which the configuration
    // resolves beside itself: a/a/data.
    const dir = tempDir();
    const r = await runCli(['init', 'node', 'site-a', '-c', 'a/a.yaml', '--data', 'a/data', '--no-tls'], { cwd: dir });
    expect(r.code, r.stderr).toBe(0);
    const node = (file: string) => (parseYaml(readFileSync(join(dir, file), 'utf8')) as { node: { dataDir: string } }).node;
    expect(node('a/a.yaml').dataDir).toBe('./data');
    expect((await runCli(['init', 'node', 'site-b', '-c', 'b/b.yaml', '--no-tls'], { cwd: dir })).code).toBe(0);
    expect(node('b/b.yaml').dataDir).toBe('./data'); // the default: beside the configuration
    expect((await runCli(['init', 'node', 'site-c', '-c', 'c/c.yaml', '--data', 'elsewhere', '--no-tls'], { cwd: dir })).code).toBe(0);
    expect(node('c/c.yaml').dataDir).toBe(join(dir, 'elsewhere'));
  });

  it('refuses a rate that is not one in the operator\'s words, before reaching the node', async () => {
    const dir = tempDir();
    const config = join(dir, 'a.yaml');
    expect((await runCli(['init', 'node', 'site-a', '-c', config, '--peers', '127.0.0.1:7813', '--no-tls'])).code).toBe(0);
    for (const bad of ['fast', '0']) {
      const r = await runCli(['rate', bad, '-c', config]);
      expect(r.code, r.stderr).toBe(2);
      expect(r.stderr).toContain(`CONFIG_INVALID: not a rate: "${bad}"`);
      expect(r.stderr).not.toContain('NaN');
    }
  });

  it('pairing a third site never silently changes the secret an existing pairing uses', async () => {
    const dir = tempDir();
    const cfg = (n: string) => join(dir, `${n}.yaml`);
    for (const [n, port] of [['b', 7821], ['c', 7822], ['a', 7823]] as const) expect((await runCli(['init', 'node', `site-${n}`, '-c', cfg(n), '--peers', `127.0.0.1:${port}`, '--no-tls'])).code).toBe(0);
    // b and c pair first.
    const tb = (await runCli(['pair', 'token', '-c', cfg('b')])).stdout.trim();
    const back = /pair accept (\S+)/.exec((await runCli(['pair', 'accept', tb, '-c', cfg('c')])).stdout)![1];
    expect((await runCli(['pair', 'accept', back, '-c', cfg('b')])).code).toBe(0);
    const secretOf = (n: string) => /secret: (\S+)/.exec(readFileSync(cfg(n), 'utf8'))![1];
    const shared = secretOf('b');
    expect(secretOf('c')).toBe(shared);
    // Then a's token is accepted on b: b must not take a's secret (c would be locked out).
    const ta = (await runCli(['pair', 'token', '-c', cfg('a')])).stdout.trim();
    const r = await runCli(['pair', 'accept', ta, '-c', cfg('b')]);
    expect(r.code, r.stderr).toBe(2);
    expect(r.stderr).toContain('CONFIG_INVALID');
    expect(r.stderr).toContain('site-c');
    expect(secretOf('b')).toBe(shared);
    // The way round that works: a accepts b's token (a has no peers yet) and takes the shared secret.
    const tb2 = (await runCli(['pair', 'token', '-c', cfg('b')])).stdout.trim();
    const back2 = /pair accept (\S+)/.exec((await runCli(['pair', 'accept', tb2, '-c', cfg('a')])).stdout)![1];
    expect((await runCli(['pair', 'accept', back2, '-c', cfg('b')])).code).toBe(0);
    expect(secretOf('a')).toBe(shared);
    expect(secretOf('b')).toBe(shared);
    // c and a share the secret (through b) but do not list each other: accepting a's token
    // on c still gives the reply a needs (it used to say only "paired", and a never learnt c).
    const ta2 = (await runCli(['pair', 'token', '-c', cfg('a')])).stdout.trim();
    const onC = (await runCli(['pair', 'accept', ta2, '-c', cfg('c')])).stdout;
    expect(onC).toContain('paired with site-a; if site-a does not list site-c as a peer yet, run on site-a:');
    expect(onC).toContain('a running node reads its peers when it starts: restart `headstart serve` on each site that is running');
    expect((await runCli(['pair', 'accept', /pair accept (\S+)/.exec(onC)![1], '-c', cfg('a')])).code).toBe(0);
    const peersOf = (n: string) => [...readFileSync(cfg(n), 'utf8').matchAll(/name: (site-\w)/g)].map((m) => m[1]).filter((x) => x !== `site-${n}`).sort();
    expect([peersOf('a'), peersOf('b'), peersOf('c')]).toEqual([['site-b', 'site-c'], ['site-a', 'site-c'], ['site-a', 'site-b']]);
  });

  it('names the flag or the token part that is wrong, once, and touches nothing', async () => {
    const fails = async (args: string[], message: string) => {
      const r = await runCli(args);
      expect(r.code, `${args.join(' ')}\n${r.stderr}`).toBe(2);
      expect(r.stderr).toContain(message);
      return r.stderr;
    };
    // The demo's flags, by name (they used to surface as keys of its generated configuration, or not at all).
    await fails(['demo', '--for', 'abc'], '--for takes a duration like 30s, 5m or 1h, not "abc"');
    await fails(['demo', '--rate', 'zz'], '--rate takes a rate like 1MiB/s or 100Mbit/s, not "zz"');
    await fails(['demo', '--link', '0'], '--link takes a rate');
    await fails(['demo', '--speedup', 'abc'], '--speedup takes a factor like 60, not "abc"');
    await fails(['demo', '--trace', 'x.csv', '--format', 'csv'], '--format takes one of vscsi, msr, spc, fiu, blkparse, alibaba, headstart, not "csv"');
    const dir = tempDir();
    const config = join(dir, 'a.yaml');
    expect((await runCli(['init', 'node', 'site-a', '-c', config, '--peers', '127.0.0.1:7812', '--no-tls'])).code).toBe(0);
    const every = await fails(['init', 'volume', 'v', '--size', '4MiB', '--every', '0s', '-c', config], 'volumes[0].schedule.every: not a positive duration: "0s"');
    expect(every).not.toContain('at least 1s apart');
    await fails(['pair', 'token', '--url', 'notaurl', '-c', config], '--url "notaurl" is not a ws:// or wss:// address');
    await fails(['pair', 'accept', 'hs1.eyJ2IjoxfQ', '-c', config], 'not a headstart pairing token: it has no node, url, secret; copy the whole token');
    const token = (await runCli(['pair', 'token', '-c', config])).stdout.trim();
    await fails(['pair', 'accept', token.slice(0, token.length - 7), '-c', config], 'not a headstart pairing token: its text after "hs1." does not decode');
    // An archive directory that is not there is a typo, not an empty archive (and is not made).
    const missing = join(dir, 'no-such-archive');
    const r = await runCli(['archive', 'list', '--store', missing]);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain(`ARCHIVE_CONFIG: no archive at ${missing}: no such directory`);
    expect(() => readFileSync(missing)).toThrow(/ENOENT/);
  });

  it('makes a TLS certificate for a new node by default (its pairing token carries it), none with --no-tls', async () => {
    const dir = tempDir();
    const withTls = join(dir, 'a.yaml');
    expect((await runCli(['init', 'node', 'site-a', '-c', withTls, '--peers', '127.0.0.1:7811'])).code).toBe(0);
    const a = parseYaml(await readFile(withTls, 'utf8')) as { tls?: { cert: string; key: string } };
    expect(a.tls).toEqual({ cert: './site-a.crt', key: './site-a.key' });
    const cert = new X509Certificate(await readFile(join(dir, 'site-a.crt')));
    expect(cert.subject).toContain('CN=site-a');
    expect(cert.subjectAltName).toContain('IP Address:127.0.0.1');
    const token = (await runCli(['pair', 'token', '-c', withTls])).stdout.trim();
    const payload = JSON.parse(Buffer.from(token.slice(4), 'base64url').toString()) as { url: string; cert: string };
    expect(payload.url).toBe('wss://127.0.0.1:7811');
    expect(payload.cert).toBe(await readFile(join(dir, 'site-a.crt'), 'utf8'));

    const plain = join(dir, 'b.yaml');
    expect((await runCli(['init', 'node', 'site-b', '-c', plain, '--peers', '127.0.0.1:7812', '--no-tls'])).code).toBe(0);
    expect((parseYaml(await readFile(plain, 'utf8')) as { tls?: unknown }).tls).toBeUndefined();
    const plainToken = (await runCli(['pair', 'token', '-c', plain])).stdout.trim();
    expect(JSON.parse(Buffer.from(plainToken.slice(4), 'base64url').toString())).toMatchObject({ url: 'ws://127.0.0.1:7812' });
  });

  it('adds a leveled volume with a recovery-point target, and refuses a target the schedule cannot meet', async () => {
    const dir = tempDir();
    const config = join(dir, 'h.yaml');
    expect((await runCli(['init', 'node', 'site-x', '-c', config, '--no-tls'])).code).toBe(0);
    const ok = await runCli(['init', 'volume', 'db', '--size', '1GiB', '--every', '5m', '--level', '--rpo-target', '15m', '-c', config]);
    expect(ok.code, ok.stderr).toBe(0);
    const text = readFileSync(config, 'utf8');
    const volume = (parseYaml(text) as { volumes: Record<string, unknown>[] }).volumes[0];
    expect(volume).toMatchObject({ name: 'db', schedule: { every: '5m', level: true }, rpoTarget: '15m' });
    const bad = await runCli(['init', 'volume', 'log', '--size', '1GiB', '--every', '5m', '--rpo-target', '5m', '-c', config]);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toContain("volumes[1].rpoTarget: 300 s is not more than the schedule's interval (300 s)");
    expect(readFileSync(config, 'utf8')).toBe(text); // refused: the file is as it was
  });

  it('adds a volume to a consistency group whose volumes are archived with their archive block', async () => {
    const dir = tempDir();
    const config = join(dir, 'h.yaml');
    expect((await runCli(['init', 'node', 'site-x', '-c', config, '--no-tls'])).code).toBe(0);
    expect((await runCli(['init', 'volume', 'wal', '--size', '1GiB', '--every', '5m', '--group', 'app', '-c', config])).code).toBe(0);
    // The operator gives wal an archive by hand, then adds db to the group.
    const doc = parseYaml(readFileSync(config, 'utf8')) as { volumes: Record<string, unknown>[] };
    doc.volumes[0].archive = { store: './archive', retention: { daily: 7 } };
    writeFileSync(config, stringifyYaml(doc));
    const r = await runCli(['init', 'volume', 'db', '--size', '1GiB', '--every', '5m', '--group', 'app', '-c', config]);
    expect(r.code, r.stderr).toBe(0);
    const volumes = (parseYaml(readFileSync(config, 'utf8')) as { volumes: Record<string, unknown>[] }).volumes;
    expect(volumes[1]).toMatchObject({ name: 'db', group: 'app', archive: { store: './archive', retention: { daily: 7 } } });
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
    // The workload writes no all-zero block (sent without payload), so every point cost at
    // least its changed blocks: a point that cost less was committed without some of them.
    const points = j.points as { n: number; sent_bytes: number; minimal_bytes: number }[];
    expect(points.length).toBe(j.snapshots_committed);
    for (const p of points) expect(p.sent_bytes, `point ${p.n}`).toBeGreaterThanOrEqual(p.minimal_bytes);
  }, 150_000);

  it('replays one disk of a multi-disk, gzip-compressed trace and says which, and when offsets wrap', async () => {
    // MSR Cambridge layout: disk 0 writes three blocks, one of them at 858 MiB (beyond the
    // default 256 MiB volume); disk 1 writes one.
    const lines = [
      '128166372003061629,hm,0,Write,8192,4096,26',
      '128166372008061629,hm,1,Write,8192,8192,26',
      '128166372013061629,hm,0,Write,900001792,4096,26',
      '128166372018061629,hm,0,Write,16384,4096,26',
    ];
    const dir = await mkdtemp(join(tmpdir(), 'hs-cli-trace-'));
    try {
      const path = join(dir, 'two-disks.csv.gz');
      await writeFile(path, gzipSync(lines.join('\n') + '\n'));
      const first = await runCli(['demo', '--for', '4s', '--json', '--trace', path, '--speedup', '1'], { timeoutMs: 120_000 });
      expect(first.code, first.stderr).toBe(0);
      expect(first.stderr).toContain('the trace has several disks: replaying disk 0 only (--disk picks another)');
      expect(first.stderr).toContain('the trace writes beyond the 256.0 MiB volume (at 858.3 MiB): offsets wrap around it');
      const a = JSON.parse(first.stdout.trim().split('\n').at(-1)!) as { replica_equal: boolean; workload: { writes: number; bytes: number } };
      expect(a.replica_equal).toBe(true);
      expect(a.workload).toMatchObject({ writes: 3, bytes: 3 * 4096 });
      const second = await runCli(['demo', '--for', '4s', '--json', '--trace', path, '--speedup', '1', '--disk', '1'], { timeoutMs: 120_000 });
      expect(second.code, second.stderr).toBe(0);
      expect(second.stderr).not.toContain('several disks');
      expect(second.stderr).not.toContain('wrap');
      const b = JSON.parse(second.stdout.trim().split('\n').at(-1)!) as { replica_equal: boolean; workload: { writes: number; bytes: number } };
      expect(b.replica_equal).toBe(true);
      expect(b.workload).toMatchObject({ writes: 1, bytes: 8192 });
      // A malformed line: fatal, named; skipped and said with --lenient.
      const typo = join(dir, 'typo.csv');
      await writeFile(typo, [lines[0], lines[1].replace('Write', 'Wrte'), lines[3]].join('\n') + '\n');
      const strict = await runCli(['demo', '--for', '4s', '--json', '--trace', typo, '--speedup', '1'], { timeoutMs: 120_000 });
      expect(strict.code).toBe(1);
      expect(strict.stderr).toContain(`TRACE_MALFORMED: ${typo}: msr trace, line 2: unknown operation "Wrte"`);
      const lenient = await runCli(['demo', '--for', '4s', '--json', '--trace', typo, '--speedup', '1', '--lenient'], { timeoutMs: 120_000 });
      expect(lenient.code, lenient.stderr).toBe(0);
      expect(lenient.stderr).toContain('skipped 1 malformed record(s) of the trace (--lenient): line 2: unknown operation "Wrte"');
      expect((JSON.parse(lenient.stdout.trim().split('\n').at(-1)!) as { workload: { writes: number } }).workload.writes).toBe(2);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  }, 150_000);
});
