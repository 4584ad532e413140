/**
 * Fault campaign: a source and a replica as separate processes (the replication runners),
 * a writer going through the source's NBD export, and a seeded sequence of faults:
 *
 *   kill-replica         kill -9 of the replica process at a random moment, then a restart
 *   kill-replica-commit  kill -9 of the replica right after a commit journaled or applied
 *   kill-source          kill -9 of the source process (writes in flight are lost to the
 *                        writer, acknowledged ones must not be), then a restart
 *   cut                  every TCP connection between them dropped
 *   corrupt              one bit flipped in what the source sends next
 *   stall                the link forwards nothing for 1.5 s
 *   wrong-key            a source with the wrong pairing secret connects to the replica
 *   garbage              random bytes, then a malformed WebSocket frame, to the replica
 *   source-disk-full     the source's file system (a tmpfs) filled for 1.5 s: writes are
 *                        refused, closes fail and are retried
 *   replica-disk-full    the replica's file system filled for 1.5 s: staging and commits fail
 * (The disk faults need to mount a tmpfs, as root; elsewhere the campaign runs without them.)
 *
 * Judged, for every point: the replica's whole image after each commit (and after each
 * restart) equals the source's content of that point (a violation otherwise); a process
 * that exits on its own is a violation too. At the end, after the last point committed,
 * every block's content on the source and on the replica is what the writer's acknowledged
 * writes left there (a write that failed because the source was killed may have landed or
 * not); every other 4 KiB block counts as lost bytes.
 *
 * The source ships with the node's predictive planner (`--policy` continuous or at-snapshot
 * for the others). `npm run faults -- [--quick] [--faults N] [--seed N] [--policy P] [--json]`;
 * `--quick` is 50 faults.
 */
import { createHash, randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connectNbd, type NbdClient } from '@headstart/nbd';
import { openVolume } from '@headstart/volume';
import { WebSocket } from 'ws';
import { isHeadstartError } from '@headstart/errors';
import { fillDisk, mountTmpfs, unmountTmpfs } from '../helpers/disk';
import { checkInvariant, Proc, type Ev } from '../replication/procs';
import { FaultyLink } from './faulty-link';

export const FAULT_KINDS = ['kill-replica', 'kill-replica-commit', 'kill-source', 'cut', 'corrupt', 'stall', 'wrong-key', 'garbage', 'source-disk-full', 'replica-disk-full'] as const;
export type FaultKind = (typeof FAULT_KINDS)[number];
const DISK_FAULTS: readonly FaultKind[] = ['source-disk-full', 'replica-disk-full'];

/** How often each kind comes up, in 50 faults. */
const WEIGHTS: Record<FaultKind, number> = { 'kill-replica': 6, 'kill-replica-commit': 6, 'kill-source': 5, cut: 8, corrupt: 8, stall: 4, 'wrong-key': 3, garbage: 4, 'source-disk-full': 3, 'replica-disk-full': 3 };

const SECRET = 'fault-campaign-pairing-secret';
const SIZE = 8 * 1024 * 1024;
const BS = 4096;
const ID = 'fault-volume';

export interface CampaignResult {
  faults: number;
  violations: number;
  bytes_lost: number;
  by_kind: Record<string, number>;
  points_checked: number;
  writes_acked: number;
  /** Writes the source refused with an error (a full disk): they must have changed nothing. */
  writes_refused: number;
  seed: number;
  /** The source's pre-send policy. */
  policy: CampaignPolicy;
  duration_s: number;
  /** Whether the disk faults ran (they need to mount a tmpfs). */
  disk_faults: boolean;
  /** What each violation was. */
  problems: string[];
}

function rng(seed: number): () => number {
  let x = seed >>> 0 || 1;
  return () => {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    return (x >>> 0) / 4294967296;
  };
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const blockHash = (b: Buffer) => createHash('sha1').update(b).digest('hex');

export type CampaignPolicy = 'predictive' | 'continuous' | 'at-snapshot';

export async function runCampaign(options: { faults: number; seed: number; policy?: CampaignPolicy; log?: (line: string) => void }): Promise<CampaignResult> {
  const policy = options.policy ?? 'predictive'; // the node's default
  const started = Date.now();
  const log = options.log ?? (() => {});
  const random = rng(options.seed);
  const dir = await mkdtemp(join(tmpdir(), 'hs-faults-'));
  // Each side's data on its own small file system, so that a fault can fill it.
  const srcDisk = mountTmpfs('512m');
  const repDisk = srcDisk === null ? null : mountTmpfs('96m');
  const diskFaults = srcDisk !== null && repDisk !== null;
  const srcDir = join(srcDisk ?? dir, 'src');
  const repDir = join(repDisk ?? dir, 'rep');
  const problems: string[] = [];
  const sourceEvents: Ev[] = [];
  const replicaEvents: Ev[] = [];
  const procs: Proc[] = [];
  // The faults: one of each kind, the rest drawn from the weighted mix, in a seeded order.
  const kinds = FAULT_KINDS.filter((k) => diskFaults || !DISK_FAULTS.includes(k));
  const pool = kinds.flatMap((k) => Array<FaultKind>(WEIGHTS[k]).fill(k));
  const plan: FaultKind[] = [...kinds];
  while (plan.length < options.faults) plan.push(pool[Math.floor(random() * pool.length)]);
  plan.splice(options.faults);
  for (let i = plan.length - 1; i > 0; i--) {
    const j = Math.floor(random() * (i + 1));
    [plan[i], plan[j]] = [plan[j], plan[i]];
  }

  let replicaPort = 0;
  const startReplica = async (): Promise<Proc> => {
    const p = new Proc('replica-runner.ts', { dir: repDir, size: SIZE, id: ID, secret: SECRET, port: replicaPort });
    procs.push(p);
    const e = await p.waitFor((x) => x.event === 'listening', 60_000, 'replica listening');
    replicaPort = e.port as number;
    return p;
  };
  let replica = await startReplica();
  const link = await FaultyLink.start(replicaPort);
  const startSource = async (): Promise<{ p: Proc; nbd: number }> => {
    const p = new Proc('source-runner.ts', { dir: srcDir, size: SIZE, id: ID, secret: SECRET, url: `ws://127.0.0.1:${link.port}`, intervalMs: 700, nbd: true, rateLimit: 4 * 1024 * 1024, policy });
    procs.push(p);
    const e = await p.waitFor((x) => x.event === 'nbd', 60_000, 'source NBD export');
    return { p, nbd: e.port as number };
  };
  let source = await startSource();

  // The writer: one write at a time, 1-8 blocks of fresh random bytes at a random place.
  // allowed[block]: the contents the block may hold (one after an acknowledged write; the
  // old and the new after a write that failed in flight).
  const allowed = new Map<number, Set<string>>();
  const blocks = SIZE / BS;
  let client: NbdClient | null = null;
  let writing = true;
  let acked = 0;
  let refused = 0;
  const writer = (async () => {
    while (writing) {
      if (client === null) {
        try {
          client = await connectNbd({ host: '127.0.0.1', port: source.nbd, exportName: 'vol' });
        } catch {
          await sleep(100);
          continue;
        }
      }
      const first = Math.floor(random() * blocks);
      const count = Math.min(1 + Math.floor(random() * 8), blocks - first);
      const data = randomBytes(count * BS);
      const hashes = Array.from({ length: count }, (_, i) => blockHash(data.subarray(i * BS, (i + 1) * BS)));
      try {
        await client.write(first * BS, data);
        acked++;
        hashes.forEach((h, i) => allowed.set(first + i, new Set([h])));
      } catch (err) {
        // Refused (an error reply: a full disk): nothing of it may have landed.
        if (isHeadstartError(err, 'NBD_CLIENT_REQUEST_FAILED')) {
          refused++;
          await sleep(50);
          continue;
        }
        // The source died under it: the write may have landed or not.
        hashes.forEach((h, i) => {
          const s = allowed.get(first + i) ?? new Set([blockHash(Buffer.alloc(BS))]);
          s.add(h);
          allowed.set(first + i, s);
        });
        client = null;
      }
      await sleep(15);
    }
  })();

  const exitedOnItsOwn = (p: Proc, name: string) => {
    if (p.exited && !killed.has(p)) problems.push(`${name} exited on its own: ${p.stderr.slice(-500)}`);
  };
  const killed = new Set<Proc>();
  const kill = async (p: Proc) => {
    killed.add(p);
    await p.kill9();
  };
  const byKind: Record<string, number> = {};
  let lost = 0;
  let checked = 0;
  try {
    await replica.waitFor((e) => e.event === 'committed', 60_000, 'first commit');
    for (const [i, kind] of plan.entries()) {
      exitedOnItsOwn(replica, 'the replica');
      exitedOnItsOwn(source.p, 'the source');
      switch (kind) {
        case 'kill-replica':
        case 'kill-replica-commit': {
          if (kind === 'kill-replica-commit') {
            const seen = replica.events.length;
            await replica
              .waitFor((e) => replica.events.indexOf(e) >= seen && e.event === 'phase' && (e.phase === 'journaled' || e.phase === 'applied'), 5_000, 'a commit under way')
              .catch(() => undefined); // no commit in 5 s: killed wherever it is
          }
          replicaEvents.push(...replica.events);
          await kill(replica);
          replica = await startReplica();
          link.retarget(replicaPort);
          break;
        }
        case 'kill-source': {
          sourceEvents.push(...source.p.events);
          await kill(source.p);
          source = await startSource();
          break;
        }
        case 'cut':
          link.cut();
          break;
        case 'corrupt':
          link.corruptNext();
          break;
        case 'stall':
          link.stall(1500);
          break;
        case 'wrong-key': {
          const rogue = new Proc('source-runner.ts', { dir: join(dir, `rogue-${i}`), size: SIZE, id: ID, secret: 'not-the-pairing-secret', url: `ws://127.0.0.1:${replicaPort}`, intervalMs: 60_000 });
          const refused = await rogue.waitFor((e) => e.event === 'source' && e.type === 'disconnected', 30_000, 'the wrong key refused').catch((err: Error) => err);
          if (refused instanceof Error) problems.push(`wrong-key: ${refused.message.slice(0, 300)}`);
          else if (refused.code !== 'LINK_AUTH_FAILED') problems.push(`wrong-key: refused with ${String(refused.code)}, not LINK_AUTH_FAILED`);
          await rogue.kill9();
          await rm(join(dir, `rogue-${i}`), { recursive: true, force: true });
          break;
        }
        case 'source-disk-full':
        case 'replica-disk-full': {
          const disk = kind === 'source-disk-full' ? srcDisk! : repDisk!;
          fillDisk(disk);
          await sleep(1500);
          await rm(join(disk, 'filler'), { force: true });
          break;
        }
        case 'garbage': {
          await new Promise<void>((resolve) => {
            const s = connect(replicaPort, '127.0.0.1', () => s.end(randomBytes(4096)));
            s.on('error', () => resolve()).on('close', () => resolve());
            s.resume();
          });
          await new Promise<void>((resolve) => {
            const ws = new WebSocket(`ws://127.0.0.1:${replicaPort}`);
            ws.on('open', () => ws.send(randomBytes(300)));
            ws.on('error', () => resolve()).on('close', () => resolve());
          });
          break;
        }
      }
      byKind[kind] = (byKind[kind] ?? 0) + 1;
      log(`fault ${i + 1}/${plan.length}: ${kind}`);
      await sleep(200 + Math.floor(random() * 600));
    }

    // The end: no more writes; the next point holds them all; the replica must commit it.
    writing = false;
    await writer;
    const closedAfter = source.p.events.length;
    const final = await source.p.waitFor((e) => source.p.events.indexOf(e) >= closedAfter && e.event === 'closed', 30_000, 'a point after the last write');
    const n = final.n as number;
    await replica.waitFor((e) => (e.event === 'committed' && (e.n as number) >= n) || (e.event === 'listening' && ((e.committed as number | null) ?? -1) >= n), 120_000, `the replica committing point ${n}`);
    exitedOnItsOwn(replica, 'the replica');
    exitedOnItsOwn(source.p, 'the source');

    // Every block as the acknowledged writes left it, on the source (its export) and the replica (its image).
    const bytesLost = async (read: (first: number, count: number) => Promise<Buffer>, where: string) => {
      let lost = 0;
      for (let b = 0; b < blocks; b += 256) {
        const chunk = await read(b, 256);
        for (let i = 0; i < 256; i++) {
          const want = allowed.get(b + i);
          if (want && !want.has(blockHash(chunk.subarray(i * BS, (i + 1) * BS)))) lost += BS;
        }
      }
      if (lost > 0) problems.push(`${where}: ${lost} bytes differ from the acknowledged writes`);
      return lost;
    };
    const reader = await connectNbd({ host: '127.0.0.1', port: source.nbd, exportName: 'vol' });
    lost = await bytesLost((first, count) => reader.read(first * BS, count * BS), 'source');
    await reader.close();
    await replica.stop();
    killed.add(replica);
    const image = await openVolume(repDir);
    try {
      lost += await bytesLost((first, count) => image.read(first * BS, count * BS), 'replica');
    } finally {
      await image.shutdown();
    }
  } catch (err) {
    // Something that should have happened did not (a point never committed, a process
    // never came up): that is a violation too, with what the processes said last.
    problems.push(`the campaign could not go on: ${(err as Error).message}`);
  } finally {
    writing = false;
    await link.close();
    for (const p of procs) await p.kill9();
    for (const disk of [srcDisk, repDisk]) if (disk !== null) unmountTmpfs(disk);
    await rm(dir, { recursive: true, force: true });
  }
  sourceEvents.push(...source.p.events);
  replicaEvents.push(...replica.events);
  const invariant = checkInvariant(sourceEvents, replicaEvents);
  checked = invariant.checked;
  problems.push(...invariant.mismatches.map((m) => `replica not equal to the source's point: ${m}`));
  return {
    faults: Object.values(byKind).reduce((a, b) => a + b, 0),
    violations: problems.length,
    bytes_lost: lost,
    by_kind: byKind,
    points_checked: checked,
    writes_acked: acked,
    writes_refused: refused,
    disk_faults: diskFaults,
    seed: options.seed,
    policy,
    duration_s: Math.round((Date.now() - started) / 100) / 10,
    problems,
  };
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const args = process.argv.slice(2);
  const value = (flag: string) => {
    const i = args.indexOf(flag);
    return i >= 0 ? args[i + 1] : undefined;
  };
  const json = args.includes('--json');
  const faults = Number(value('--faults') ?? (args.includes('--quick') ? 50 : 200));
  const seed = Number(value('--seed') ?? Date.now() % 100_000);
  const policy = (value('--policy') ?? 'predictive') as CampaignPolicy;
  if (!Number.isInteger(faults) || faults < 1 || !Number.isInteger(seed) || !['predictive', 'continuous', 'at-snapshot'].includes(policy)) {
    process.stderr.write('usage: npm run faults -- [--quick] [--faults N] [--seed N] [--policy predictive|continuous|at-snapshot] [--json]\n');
    process.exit(2);
  }
  const r = await runCampaign({ faults, seed, policy, log: (l) => process.stderr.write(`${l}\n`) });
  if (!json) {
    process.stdout.write(`fault campaign, seed ${r.seed}, policy ${r.policy}: ${r.faults} faults in ${r.duration_s} s\n`);
    for (const [k, c] of Object.entries(r.by_kind)) process.stdout.write(`  ${k.padEnd(20)} ${c}\n`);
    process.stdout.write(`points checked ${r.points_checked}, writes acknowledged ${r.writes_acked}, refused ${r.writes_refused}${r.disk_faults ? '' : ' (no disk faults: mounting a tmpfs needs root)'}\n`);
    process.stdout.write(`violations ${r.violations}, bytes lost ${r.bytes_lost}\n`);
    for (const p of r.problems) process.stdout.write(`  ${p}\n`);
  }
  process.stdout.write(`${JSON.stringify(r)}\n`);
  process.exit(r.violations === 0 && r.bytes_lost === 0 ? 0 : 1);
}
