/**
 * A real file system on a headstart volume, through the kernel: ext4 made by mkfs.ext4 and
 * mounted through a loop device over nbdfuse (libnbd's FUSE client), so every write, flush,
 * discard and FUA the kernel's ext4 and block layers issue reaches the source's NBD server as
 * it would from a VM's disk. It checks what a user of a DR product relies on:
 *   - a point taken with the file system frozen (`fsfreeze`, the way backup agents quiesce
 *     one) reads back on the replica file for file, and fscks clean;
 *   - after kill -9 of the source mid-load, the promoted replica is a crash-consistent ext4:
 *     it mounts (the kernel replays the journal), fscks clean, the files of the frozen point
 *     that the load did not touch are intact, and the load's SQLite database opens, checks
 *     intact and holds no transaction in part.
 * Needs root, /dev/fuse and loop devices (as on CI); skipped where they are missing.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync, openSync, fsyncSync, closeSync, renameSync, unlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { describe, expect, it } from 'vitest';
import { killHard, startServe, stopGracefully, waitFor, waitServing, type Serve } from '../helpers/cli';
import { seededRandom } from '../helpers/random';
import { pairedSites } from '../helpers/sites';

const MiB = 1 << 20;

function run(cmd: string, args: string[]): { code: number | null; out: string } {
  const r = spawnSync(cmd, args, { encoding: 'utf8', timeout: 120_000 });
  return { code: r.status, out: `${r.stdout ?? ''}${r.stderr ?? ''}${r.error ? String(r.error) : ''}` };
}

function must(cmd: string, args: string[]): string {
  const r = run(cmd, args);
  if (r.code !== 0) throw new Error(`${cmd} ${args.join(' ')} exited ${r.code}: ${r.out}`);
  return r.out;
}

/** Why this machine cannot run the test (no root, FUSE, loop devices or tools), or null. */
function missing(): string | null {
  if (process.getuid?.() !== 0) return 'not root';
  if (!existsSync('/dev/fuse')) return 'no /dev/fuse';
  for (const tool of ['nbdfuse', 'mkfs.ext4', 'e2fsck', 'fsfreeze', 'losetup', 'nbdcopy', 'python3']) {
    if (run('sh', ['-c', `command -v ${tool} || test -x /usr/sbin/${tool}`]).code !== 0) return `no ${tool}`;
  }
  // A loop mount of a small ext4 image: the kernel must allow it here.
  const dir = mkdtempSync(join(tmpdir(), 'hs-loopprobe-'));
  try {
    const img = join(dir, 'img');
    writeFileSync(img, Buffer.alloc(0));
    must('truncate', ['-s', '8M', img]);
    must('mkfs.ext4', ['-q', '-F', img]);
    mkdirSync(join(dir, 'm'));
    const m = run('mount', ['-o', 'loop,ro', img, join(dir, 'm')]);
    if (m.code !== 0) return `cannot loop-mount: ${m.out.trim()}`;
    run('umount', [join(dir, 'm')]);
    return null;
  } catch (err) {
    return String(err);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

const why = missing();
if (why !== null) console.warn(`ext4 over NBD: skipped (${why})`);

const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');

/** Every regular file under `root`, by relative path, with its hash (lost+found left out). */
function tree(root: string): Map<string, string> {
  const out = new Map<string, string>();
  const walk = (dir: string) => {
    for (const name of readdirSync(dir)) {
      const p = join(dir, name);
      if (dir === root && name === 'lost+found') continue;
      if (statSync(p).isDirectory()) walk(p);
      else out.set(relative(root, p), sha(readFileSync(p)));
    }
  };
  walk(root);
  return out;
}

/** Writes files (each made durable with fsync), and renames and deletes some: what the tree holds is read back with tree(). */
function churn(root: string, rand: () => number, files: number, tag: string): void {
  for (let i = 0; i < files; i++) {
    const d = join(root, `d${Math.floor(rand() * 8)}`);
    mkdirSync(d, { recursive: true });
    const size = Math.floor(rand() * rand() * 512 * 1024);
    const data = randomBytes(size);
    const p = join(d, `${tag}-${i}.bin`);
    const fd = openSync(p, 'w');
    writeFileSync(fd, data);
    fsyncSync(fd);
    closeSync(fd);
    const existing = readdirSync(d).filter((n) => n.endsWith('.bin'));
    const r = rand();
    if (r < 0.1 && existing.length > 1) unlinkSync(join(d, existing[Math.floor(rand() * existing.length)]));
    else if (r < 0.2 && existing.length > 1) {
      const from = existing[Math.floor(rand() * existing.length)];
      renameSync(join(d, from), join(d, `${from}.moved`));
    }
  }
}

/**
 * The load, until killed (argv[1]: its directory): files written with fsync, some renamed or
 * deleted, and a SQLite bank (WAL, synchronous=FULL) whose transactions move money between
 * accounts: whatever point the replica holds, the total must be what it always is.
 */
const LOADER = `
import os, random, sqlite3, sys
root = sys.argv[1]; rnd = random.Random(11); i = 0
os.makedirs(root, exist_ok=True)
db = sqlite3.connect(os.path.join(root, 'bank.db'), isolation_level=None)
db.execute('PRAGMA journal_mode=WAL'); db.execute('PRAGMA synchronous=FULL')
db.execute('CREATE TABLE account(id INTEGER PRIMARY KEY, balance INTEGER NOT NULL)')
db.execute('CREATE TABLE transfer(id INTEGER PRIMARY KEY, src INTEGER, dst INTEGER, amount INTEGER, note BLOB)')
db.execute('BEGIN'); db.executemany('INSERT INTO account VALUES (?, 1000)', [(a,) for a in range(1000)]); db.execute('COMMIT')
while True:
    d = os.path.join(root, 'd%d' % rnd.randrange(8)); os.makedirs(d, exist_ok=True)
    p = os.path.join(d, 'f%d.bin' % i); i += 1
    with open(p, 'wb') as f:
        f.write(os.urandom(int(rnd.random() * rnd.random() * 512 * 1024))); f.flush(); os.fsync(f.fileno())
    names = os.listdir(d); r = rnd.random()
    if r < 0.1 and len(names) > 1: os.unlink(os.path.join(d, rnd.choice(names)))
    elif r < 0.2 and len(names) > 1:
        n = rnd.choice(names); os.rename(os.path.join(d, n), os.path.join(d, n + '.moved'))
    for _ in range(5):
        db.execute('BEGIN')
        for _ in range(20):
            a, b, m = rnd.randrange(1000), rnd.randrange(1000), rnd.randrange(1, 50)
            db.execute('UPDATE account SET balance = balance - ? WHERE id = ?', (m, a))
            db.execute('UPDATE account SET balance = balance + ? WHERE id = ?', (m, b))
            db.execute('INSERT INTO transfer(src, dst, amount, note) VALUES (?, ?, ?, ?)', (a, b, m, os.urandom(200)))
        db.execute('COMMIT')
`;

/** What a SQLite database holds (argv[1]): its integrity check, the accounts' total and the transfers. */
const BANK_CHECK = `
import json, sqlite3, sys
db = sqlite3.connect(sys.argv[1])
print(json.dumps({'integrity': db.execute('PRAGMA integrity_check').fetchone()[0],
  'total': db.execute('SELECT sum(balance) FROM account').fetchone()[0],
  'accounts': db.execute('SELECT count(*) FROM account').fetchone()[0],
  'transfers': db.execute('SELECT count(*) FROM transfer').fetchone()[0]}))
`;

describe.skipIf(why !== null)('a real ext4 file system on a replicated volume (kernel loop over nbdfuse)', () => {
  it('a frozen point reads back file for file; after kill -9 mid-load the promoted replica mounts, fscks clean, and its SQLite database adds up', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'hs-ext4-'));
    const fuseDir = join(dir, 'fuse');
    const fsDir = join(dir, 'fs');
    const checkDir = join(dir, 'check');
    for (const d of [fuseDir, fsDir, checkDir]) mkdirSync(d);
    const disk = join(fuseDir, 'disk');
    let siteA: Serve | null = null;
    let siteB: Serve | null = null;
    let nbdfuse: ChildProcess | null = null;
    let loopDev: string | null = null;
    try {
      const { a, b, ports, ok } = await pairedSites(dir, { a: join(dir, 'a-data'), b: join(dir, 'b-data') });
      await ok(['init', 'volume', 'fs', '--size', '256MiB', '--role', 'primary', '--every', '2s', '--sink', 'site-b', '-c', a]);
      await ok(['init', 'volume', 'fs', '--size', '256MiB', '--role', 'replica', '--every', '2s', '--sink', 'site-a', '-c', b]);
      siteB = startServe(b);
      siteA = startServe(a);
      await waitServing(siteA, a);
      await waitServing(siteB, b);

      // The source volume as a file, through the kernel's FUSE; ext4 on it through a loop device.
      nbdfuse = spawn('nbdfuse', [disk, `nbd://127.0.0.1:${ports.aNbd}/fs`], { stdio: ['ignore', 'ignore', 'pipe'] });
      let fuseErr = '';
      nbdfuse.stderr!.on('data', (d: Buffer) => (fuseErr += d.toString()));
      await waitFor(`nbdfuse serving ${disk}`, async () => (existsSync(disk) && statSync(disk).size === 256 * MiB) || (nbdfuse!.exitCode !== null && Promise.reject(new Error(`nbdfuse exited: ${fuseErr}`))), 20_000);
      must('mkfs.ext4', ['-q', '-F', disk]);
      must('mount', ['-o', 'loop', disk, fsDir]);
      loopDev = must('losetup', ['-j', disk]).split(':')[0] || null;

      // --- a frozen point: the replica's copy reads back file for file.
      churn(fsDir, seededRandom(7), 150, 'a');
      const frozenTree = tree(fsDir);
      expect(frozenTree.size).toBeGreaterThan(100);
      must('fsfreeze', ['-f', fsDir]);
      let frozen: number;
      try {
        frozen = (JSON.parse(await ok(['snapshot', 'fs', '--wait', '--json', '-c', a])) as { n: number }).n;
        // Frozen: no write reaches the volume, so the replica is at `frozen` now (or a later,
        // identical point) and its read-only export shows it.
        must('nbdcopy', [`nbd://127.0.0.1:${ports.bNbd}/fs`, join(dir, 'frozen.img')]);
      } finally {
        must('fsfreeze', ['-u', fsDir]);
      }
      expect(frozen).toBeGreaterThan(0);
      const fsck = run('e2fsck', ['-fn', join(dir, 'frozen.img')]);
      expect(fsck.code, fsck.out).toBe(0);
      must('mount', ['-o', 'loop,ro,noload', join(dir, 'frozen.img'), checkDir]);
      try {
        expect(tree(checkDir)).toEqual(frozenTree);
      } finally {
        must('umount', [checkDir]);
      }

      // --- a load in new directories (the frozen files stay as they were), points every 2 s;
      // kill -9 of the source while it runs.
      const loader = spawn('python3', ['-c', LOADER, join(fsDir, 'load')], { stdio: ['ignore', 'ignore', 'pipe'] });
      let loaderErr = '';
      loader.stderr!.on('data', (d: Buffer) => (loaderErr += d.toString()));
      const committedOnB = async () => (JSON.parse(await ok(['status', '--json', '-c', b])) as { volumes: { committed: { n: number } | null }[] }).volumes[0].committed?.n ?? -1;
      await waitFor('the replica commits points of the load', async () => (await committedOnB()) > frozen + 1 || (loader.exitCode !== null && Promise.reject(new Error(`the load stopped: ${loaderErr}`))), 60_000);
      await new Promise((r) => setTimeout(r, 1500));
      expect(loader.exitCode, loaderErr).toBeNull();
      await killHard(siteA.process);
      siteA = null;
      // The source is gone: drop the stack above it at once (its I/O fails from here on).
      loader.kill('SIGKILL');
      nbdfuse.kill('SIGKILL');
      run('umount', ['-l', fsDir]);
      if (loopDev) run('losetup', ['-d', loopDev]);
      loopDev = null;
      run('umount', ['-l', fuseDir]);
      nbdfuse = null;

      // --- failover: the promoted replica is a crash-consistent ext4.
      const promoted = JSON.parse(await ok(['promote', 'fs', '--force', '--json', '-c', b])) as { point: number };
      expect(promoted.point).toBeGreaterThan(frozen);
      const crashImg = join(dir, 'crash.img');
      must('nbdcopy', [`nbd://127.0.0.1:${ports.bNbd}/fs`, crashImg]);
      // Mounting replays the journal (what a VM booted at the DR site does), then fsck.
      must('mount', ['-o', 'loop', crashImg, checkDir]);
      let bank: { integrity: string; accounts: number; total: number; transfers: number } | null = null;
      try {
        const after = tree(checkDir);
        for (const [path, hash] of frozenTree) expect(after.get(path), path).toBe(hash);
        expect(after.size).toBeGreaterThan(frozenTree.size);
        // The database opens (SQLite recovers its WAL), checks intact, and no transaction is
        // there in part: the money adds up.
        bank = JSON.parse(must('python3', ['-c', BANK_CHECK, join(checkDir, 'load', 'bank.db')])) as typeof bank;
        expect(bank).toMatchObject({ integrity: 'ok', accounts: 1000, total: 1_000_000 });
        expect(bank!.transfers).toBeGreaterThan(0);
      } finally {
        must('umount', [checkDir]);
      }
      const crashFsck = run('e2fsck', ['-fn', crashImg]);
      expect(crashFsck.code, crashFsck.out).toBe(0);
      console.log(`ext4 over NBD: frozen point ${frozen} (${frozenTree.size} files) equal on the replica; promoted at point ${promoted.point} after kill -9, fsck clean, SQLite intact with ${bank!.transfers} transfers`);
      expect(await stopGracefully(siteB.process)).toBe(0);
      siteB = null;
    } finally {
      if (siteA) await killHard(siteA.process);
      if (siteB) await killHard(siteB.process);
      run('umount', ['-l', checkDir]);
      run('umount', ['-l', fsDir]);
      if (loopDev) run('losetup', ['-d', loopDev]);
      nbdfuse?.kill('SIGKILL');
      run('umount', ['-l', fuseDir]);
      // Only once nothing is mounted under it.
      if (!readFileSync('/proc/self/mounts', 'utf8').includes(dir)) rmSync(dir, { recursive: true, force: true });
    }
  }, 240_000);
});
