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
 *   kill-source-disk-full  the source's file system filled, the source killed -9 and
 *                        restarted on the full disk (it must come up: reads and shipping go
 *                        on, writes are refused), then the space freed after 1.5 s
 *   kill-replica-disk-full the replica's file system filled, the replica killed -9 (often
 *                        mid-commit) and restarted on the full disk (it must come up, its
 *                        unfinished commit kept), then the space freed after 1.5 s
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
 * for the others). `--group`: two volumes in a consistency group on both sides (the
 * runners close them in one step and the replica commits them together), written at random;
 * also judged: after every replica restart both hold the same point. `--no-disk-faults`: no
 * tmpfs, the data on the temporary directory's file system (where the replica's direct I/O
 * runs). `npm run faults -- [--quick] [--faults N] [--seed N] [--policy P] [--group] [--no-disk-faults] [--events FILE] [--json]`;
 * `--quick` is 50 faults. `--events FILE` writes every event both sides printed, as JSON lines
 * in the order received (`side`, `receivedAt`): what a failed seed needs to be understood.
 */
import { createHash, randomBytes } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connectNbd, type NbdClient } from '@headstart/nbd';
import { openVolume } from '@headstart/volume';
import { WebSocket } from 'ws';
import { isHeadstartError } from '@headstart/errors';
import { fillDisk, mountTmpfs, unmountTmpfs } from '../helpers/disk';
import { seededRandom } from '../helpers/random';
import { checkInvariant, Proc, type Ev } from '../replication/procs';
import { FaultyLink } from './faulty-link';

export const FAULT_KINDS = ['kill-replica', 'kill-replica-commit', 'kill-source', 'cut', 'corrupt', 'stall', 'wrong-key', 'garbage', 'source-disk-full', 'replica-disk-full', 'kill-source-disk-full', 'kill-replica-disk-full'] as const;
export type FaultKind = (typeof FAULT_KINDS)[number];
/** The kinds that need a tmpfs mounted (root): skipped where mounting is not allowed. */
export const DISK_FAULTS: readonly FaultKind[] = ['source-disk-full', 'replica-disk-full', 'kill-source-disk-full', 'kill-replica-disk-full'];

/** How often each kind comes up, in 54 faults. */
const WEIGHTS: Record<FaultKind, number> = { 'kill-replica': 6, 'kill-replica-commit': 6, 'kill-source': 5, cut: 8, corrupt: 8, stall: 4, 'wrong-key': 3, garbage: 4, 'source-disk-full': 3, 'replica-disk-full': 3, 'kill-source-disk-full': 2, 'kill-replica-disk-full': 2 };

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
  /** Whether the source and the replica ran a consistency group of two volumes (--group). */
  group: boolean;
  /** Replica restarts after which both volumes held a point closed for both (each checked to be the same one). */
  group_restarts_checked: number;
  /** Times the source's link, away at a close, was set to catch up to the latest point (skipping those between). */
  catch_ups: number;
  duration_s: number;
  /** Whether the disk faults ran (they need to mount a tmpfs). */
  disk_faults: boolean;
  /** What each violation was. */
  problems: string[];
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const blockHash = (b: Buffer) => createHash('sha1').update(b).digest('hex');

export type CampaignPolicy = 'predictive' | 'continuous' | 'at-snapshot';

export async function runCampaign(options: { faults: number; seed: number; policy?: CampaignPolicy; group?: boolean; diskFaults?: boolean; eventsFile?: string; log?: (line: string) => void }): Promise<CampaignResult> {
  const policy = options.policy ?? 'predictive'; // the node's default
  // One volume, or a consistency group of two (runners' `members`): their exports' names.
  const volumes = options.group ? ['wal', 'db'] : ['vol'];
  const layout = options.group ? { members: volumes, group: 'app' } : { id: ID };
  const started = Date.now();
  const log = options.log ?? (() => {});
  const random = seededRandom(options.seed);
  const dir = await mkdtemp(join(tmpdir(), 'hs-faults-'));
  // Each side's data on its own small file system, so that a fault can fill it.
  // (`diskFaults: false`: on the temporary directory's own file system instead, where the
  // replica writes past the page cache; a tmpfs has no O_DIRECT.)
  const srcDisk = options.diskFaults === false ? null : mountTmpfs('512m');
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
  /** What each replica process held once it had recovered: a group's volumes, one point. */
  const recoveries: { volume: string; scheduledAt: number | null }[][] = [];
  const startReplica = async (): Promise<Proc> => {
    const p = new Proc('replica-runner.ts', { dir: repDir, size: SIZE, ...layout, secret: SECRET, port: replicaPort });
    procs.push(p);
    const e = await p.waitFor((x) => x.event === 'listening', 60_000, 'replica listening');
    replicaPort = e.port as number;
    recoveries.push(p.events.filter((x) => x.event === 'recovered').map((x) => ({ volume: x.volume as string, scheduledAt: x.scheduledAt as number | null })));
    return p;
  };
  let replica = await startReplica();
  const link = await FaultyLink.start(replicaPort);
  const startSource = async (): Promise<{ p: Proc; nbd: number }> => {
    const p = new Proc('source-runner.ts', { dir: srcDir, size: SIZE, ...layout, secret: SECRET, url: `ws://127.0.0.1:${link.port}`, intervalMs: 700, nbd: true, rateLimit: 4 * 1024 * 1024, policy });
    procs.push(p);
    const e = await p.waitFor((x) => x.event === 'nbd', 60_000, 'source NBD export');
    return { p, nbd: e.port as number };
  };
  let source = await startSource();

  // The writer: one write at a time, 1-8 blocks of fresh random bytes at a random place of
  // a random volume. allowed[volume][block]: the contents the block may hold (one after an
  // acknowledged write; the old and the new after a write that failed in flight).
  const allowedOf = new Map(volumes.map((v) => [v, new Map<number, Set<string>>()]));
  const blocks = SIZE / BS;
  const clients = new Map<string, NbdClient>();
  let writing = true;
  let acked = 0;
  let refused = 0;
  const writer = (async () => {
    while (writing) {
      const name = volumes[Math.floor(random() * volumes.length)];
      const allowed = allowedOf.get(name)!;
      let client = clients.get(name);
      if (client === undefined) {
        try {
          client = await connectNbd({ host: '127.0.0.1', port: source.nbd, exportName: name });
          clients.set(name, client);
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
        clients.clear();
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
  let groupRecoveries = 0;
  try {
    await replica.waitFor((e) => e.event === 'committed', 60_000, 'first commit');
    if (options.group) {
      // Faults start once the group holds a point of both volumes (first copies are each their own).
      const common = () => {
        const at = (v: string) => new Set(replica.events.filter((e) => e.event === 'committed' && e.volume === v).map((e) => e.scheduledAt));
        const b = at(volumes[1]);
        return [...at(volumes[0])].some((t) => b.has(t));
      };
      await replica.waitFor(() => common(), 60_000, 'a point of the group committed on both volumes');
    }
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
        case 'kill-source-disk-full': {
          fillDisk(srcDisk!);
          sourceEvents.push(...source.p.events);
          await kill(source.p);
          source = await startSource();
          await sleep(1500);
          await rm(join(srcDisk!, 'filler'), { force: true });
          break;
        }
        case 'kill-replica-disk-full': {
          fillDisk(repDisk!);
          replicaEvents.push(...replica.events);
          await kill(replica);
          replica = await startReplica();
          link.retarget(replicaPort);
          await sleep(1500);
          await rm(join(repDisk!, 'filler'), { force: true });
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
    for (const name of volumes) {
      const final = await source.p.waitFor((e) => source.p.events.indexOf(e) >= closedAfter && e.event === 'closed' && e.volume === (options.group ? name : ID), 30_000, `a point of ${name} after the last write`);
      const n = final.n as number;
      const mine = (e: Ev) => e.volume === final.volume && ((e.event === 'committed' && (e.n as number) >= n) || (e.event === 'recovered' && ((e.n as number | null) ?? -1) >= n));
      await replica.waitFor(mine, 120_000, `the replica committing point ${n} of ${name}`);
    }
    exitedOnItsOwn(replica, 'the replica');
    exitedOnItsOwn(source.p, 'the source');

    // Every block as the acknowledged writes left it, on the source (its export) and the replica (its image).
    const bytesLost = async (name: string, read: (first: number, count: number) => Promise<Buffer>, where: string) => {
      const allowed = allowedOf.get(name)!;
      let lost = 0;
      for (let b = 0; b < blocks; b += 256) {
        const chunk = await read(b, 256);
        for (let i = 0; i < 256; i++) {
          const want = allowed.get(b + i);
          if (want && !want.has(blockHash(chunk.subarray(i * BS, (i + 1) * BS)))) lost += BS;
        }
      }
      if (lost > 0) problems.push(`${where}${options.group ? ` ${name}` : ''}: ${lost} bytes differ from the acknowledged writes`);
      return lost;
    };
    for (const name of volumes) {
      const reader = await connectNbd({ host: '127.0.0.1', port: source.nbd, exportName: name });
      lost += await bytesLost(name, (first, count) => reader.read(first * BS, count * BS), 'source');
      await reader.close();
    }
    await replica.stop();
    killed.add(replica);
    for (const name of volumes) {
      const image = await openVolume(options.group ? join(repDir, name) : repDir);
      try {
        lost += await bytesLost(name, (first, count) => image.read(first * BS, count * BS), 'replica');
      } finally {
        await image.shutdown();
      }
    }
  } catch (err) {
    // Something that should have happened did not (a point never committed, a process
    // never came up): that is a violation too, with what the processes said last.
    const last = (p: Proc, event: string) => volumes.map((v) => [...p.events].reverse().find((e) => e.event === event && (e.volume === v || !options.group))).filter(Boolean);
    const state = JSON.stringify({ links: last(source.p, 'link-status'), groupWaits: last(replica, 'group-wait') });
    problems.push(`the campaign could not go on: ${(err as Error).message}\nlast known: ${state}`);
  } finally {
    writing = false;
    await link.close();
    for (const p of procs) await p.kill9();
    for (const disk of [srcDisk, repDisk]) if (disk !== null) unmountTmpfs(disk);
    await rm(dir, { recursive: true, force: true });
  }
  sourceEvents.push(...source.p.events);
  replicaEvents.push(...replica.events);
  if (options.eventsFile !== undefined) {
    const lines = [...sourceEvents.map((e) => ({ side: 'source', ...e })), ...replicaEvents.map((e) => ({ side: 'replica', ...e }))];
    lines.sort((x, y) => (x.receivedAt ?? 0) - (y.receivedAt ?? 0));
    await writeFile(options.eventsFile, lines.map((e) => JSON.stringify(e)).join('\n') + '\n');
  }
  const invariant = checkInvariant(sourceEvents, replicaEvents);
  checked = invariant.checked;
  problems.push(...invariant.mismatches.map((m) => `replica not equal to the source's point: ${m}`));
  if (options.group) {
    // After every restart, the group's volumes hold one point: the same scheduled time, once
    // both hold a point the source closed for both (first copies are each volume's own).
    const closedAt = (v: string) => new Set(sourceEvents.filter((e) => e.event === 'closed' && e.volume === v).map((e) => e.scheduledAt as number));
    const both = [...closedAt(volumes[0])].filter((t) => closedAt(volumes[1]).has(t));
    const groupTimes = new Set(both);
    for (const [i, r] of recoveries.entries()) {
      const times = r.map((x) => x.scheduledAt);
      if (times.every((t) => t !== null && groupTimes.has(t)) && new Set(times).size > 1) {
        problems.push(`replica start ${i + 1}: the group's volumes hold different points: ${r.map((x) => `${x.volume} at ${x.scheduledAt}`).join(', ')}`);
      }
    }
    groupRecoveries = recoveries.filter((r) => r.every((x) => x.scheduledAt !== null && groupTimes.has(x.scheduledAt))).length;
  }
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
    group: options.group === true,
    group_restarts_checked: groupRecoveries,
    catch_ups: sourceEvents.filter((e) => e.event === 'catch-up').length,
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
  const usage = 'usage: npm run faults -- [--quick] [--faults N] [--seed N] [--policy predictive|continuous|at-snapshot] [--group] [--no-disk-faults] [--events FILE] [--json]\n';
  if (args.includes('--help') || args.includes('-h')) {
    process.stdout.write(usage);
    process.exit(0);
  }
  // A flag not known (a typo) would otherwise run the default 200 faults, for minutes.
  const known = new Set(['--quick', '--faults', '--seed', '--policy', '--group', '--no-disk-faults', '--events', '--json']);
  const unknown = args.filter((a, i) => a.startsWith('-') && !known.has(a) && !['--faults', '--seed', '--policy', '--events'].includes(args[i - 1]));
  if (unknown.length > 0) {
    process.stderr.write(`unknown flag ${unknown.join(', ')}\n${usage}`);
    process.exit(2);
  }
  const json = args.includes('--json');
  const faults = Number(value('--faults') ?? (args.includes('--quick') ? 50 : 200));
  const seed = Number(value('--seed') ?? Date.now() % 100_000);
  const policy = (value('--policy') ?? 'predictive') as CampaignPolicy;
  const group = args.includes('--group');
  const diskFaults = !args.includes('--no-disk-faults');
  if ((args.includes('--events') && (value('--events') ?? '-').startsWith('-')) || !Number.isInteger(faults) || faults < 1 || !Number.isInteger(seed) || !['predictive', 'continuous', 'at-snapshot'].includes(policy)) {
    process.stderr.write(usage);
    process.exit(2);
  }
  const r = await runCampaign({ faults, seed, policy, group, diskFaults, eventsFile: value('--events'), log: (l) => process.stderr.write(`${l}\n`) });
  if (!json) {
    process.stdout.write(`fault campaign, seed ${r.seed}, policy ${r.policy}${r.group ? `, a consistency group of two volumes (${r.group_restarts_checked} replica restarts checked for one common point)` : ''}: ${r.faults} faults in ${r.duration_s} s\n`);
    for (const [k, c] of Object.entries(r.by_kind)) process.stdout.write(`  ${k.padEnd(20)} ${c}\n`);
    process.stdout.write(`points checked ${r.points_checked}, catch-ups ${r.catch_ups}, writes acknowledged ${r.writes_acked}, refused ${r.writes_refused}${r.disk_faults ? '' : ' (no disk faults: --no-disk-faults, or mounting a tmpfs needs root)'}\n`);
    process.stdout.write(`violations ${r.violations}, bytes lost ${r.bytes_lost}\n`);
    for (const p of r.problems) process.stdout.write(`  ${p}\n`);
  }
  process.stdout.write(`${JSON.stringify(r)}\n`);
  process.exit(r.violations === 0 && r.bytes_lost === 0 ? 0 : 1);
}
