/**
 * `headstart archive list|restore|prune|verify`: the operator's side of the archive
 * (packages/archive). Each maps one to one onto listPoints, restorePoint /
 * restoreToNewVolume, prune and verifyArchive.
 *
 * Where the archive is: `--store URL` (a directory, dir:PATH or s3://bucket/prefix?endpoint=...),
 * or else the `archive.store` of each volume in the node configuration (`-c`). S3
 * credentials come from the environment or ~/.aws, as for the node.
 *
 * The archive package (and the AWS SDK under it) loads only when one of these commands
 * runs, so `headstart --help` stays instant.
 */
import { mkdir, rename, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { InvalidArgumentError, Option, type Command } from 'commander';
import { HeadstartError, isHeadstartError } from '@headstart/errors';
import type { ObjectStore, PointInfo, RetentionPolicy, StoreSpec } from '@headstart/archive';

const archiveLib = () => import('@headstart/archive');
const nodeLib = () => import('@headstart/node');

/** Exit codes shared with main.ts (EXIT there); 4: a check found the data different from what it should be. */
export interface ArchiveExit {
  readonly ok: number;
  readonly notEqual: number;
}

interface Where {
  store?: string;
  config: string;
  volume?: string;
}

interface Target {
  readonly volumeId: string;
  readonly store: ObjectStore;
  readonly retention: RetentionPolicy | undefined;
  /** Its consistency group in the configuration, or null. */
  readonly groupName: string | null;
  /** The other volumes of that group: retention plans them together, `restore --group` restores them at the same time. */
  readonly group: readonly string[];
}

const MiB = 1 << 20;
const mib = (b: number) => `${(b / MiB).toFixed(1)} MiB`;

function pointArg(v: string): number {
  if (!/^\d+$/.test(v) || !Number.isSafeInteger(Number(v))) throw new InvalidArgumentError('a snapshot point number (0, 1, 2, ...)');
  return Number(v);
}
function countArg(v: string): number {
  if (!/^\d+$/.test(v)) throw new InvalidArgumentError('a whole number');
  return Number(v);
}

/**
 * The stores and volumes a command works on. With --store: that store, the named volume or
 * every volume it holds. Else every configured volume with an archive (or the named one).
 * Stores are opened once each and closed by the returned `close`.
 */
async function targets(o: Where): Promise<{ list: Target[]; close: () => Promise<void> }> {
  const { openStore, listVolumes, parseStoreUrl } = await archiveLib();
  const opened: ObjectStore[] = [];
  const open = async (spec: string | StoreSpec) => {
    const s = await openStore(spec);
    opened.push(s);
    return s;
  };
  const close = async () => {
    await Promise.allSettled(opened.map((s) => s.close()));
  };
  try {
    if (o.store !== undefined) {
      // A directory that is not there holds no archive: a typo, not an empty archive.
      const spec = parseStoreUrl(o.store);
      if (spec.kind === 'dir' && !(await stat(spec.path).then((st) => st.isDirectory(), () => false))) {
        throw new HeadstartError('ARCHIVE_CONFIG', `no archive at ${spec.path}: no such directory`);
      }
      const store = await open(spec);
      const ids = o.volume !== undefined ? [o.volume] : await listVolumes({ store });
      return { list: ids.map((volumeId) => ({ volumeId, store, retention: undefined, groupName: null, group: [] })), close };
    }
    const { loadConfig } = await nodeLib();
    const config = await loadConfig(o.config);
    const archived = config.volumes.filter((v) => v.archive !== undefined && (o.volume === undefined || v.name === o.volume));
    if (o.volume !== undefined && archived.length === 0) {
      const known = config.volumes.some((v) => v.name === o.volume);
      throw new HeadstartError('ARCHIVE_CONFIG', known ? `volume ${o.volume} in ${o.config} has no archive: block (or give --store)` : `${o.config} has no volume ${JSON.stringify(o.volume)}`);
    }
    if (archived.length === 0) throw new HeadstartError('ARCHIVE_CONFIG', `no volume in ${o.config} has an archive: block; give --store URL`);
    const list: Target[] = [];
    for (const v of archived) {
      const group = v.group === undefined ? [] : config.volumes.filter((x) => x.group === v.group && x.name !== v.name).map((x) => x.name);
      list.push({ volumeId: v.name, store: await open(v.archive!.store), retention: v.archive!.retention, groupName: v.group ?? null, group });
    }
    return { list, close };
  } catch (err) {
    await close();
    throw err;
  }
}

async function withTargets<T>(o: Where, fn: (list: Target[]) => Promise<T>): Promise<T> {
  const { list, close } = await targets(o);
  try {
    return await fn(list);
  } finally {
    await close();
  }
}

/** A progress bar on stderr, only on a terminal and never with --json. */
async function progressBar(enabled: boolean, format: string): Promise<{ update(value: number, total?: number): void; stop(): void }> {
  if (!enabled || process.stderr.isTTY !== true) return { update() {}, stop() {} };
  const { default: progress } = await import('cli-progress');
  const bar = new progress.SingleBar({ stream: process.stderr, format, hideCursor: true, clearOnComplete: true, fps: 10 }, progress.Presets.shades_classic);
  let started = false;
  return {
    update(value, total) {
      if (!started) {
        bar.start(total ?? 0, value);
        started = true;
      } else {
        if (total !== undefined) bar.setTotal(total);
        bar.update(value);
      }
    },
    stop: () => started && bar.stop(),
  };
}

function out(json: boolean | undefined, value: unknown, human: () => string): void {
  process.stdout.write(json ? JSON.stringify(value) + '\n' : human() + '\n');
}

function pointLine(p: PointInfo): string {
  const flags = [p.protected ? 'protected' : '', p.fullCopy ? 'full copy' : ''].filter(Boolean).join(', ');
  return `  ${String(p.n).padStart(6)}  ${new Date(p.scheduledAt).toISOString()}  ${mib(p.bytes).padStart(11)}  ${mib(p.uniqueBytes).padStart(11)}${flags ? `  (${flags})` : ''}`;
}

type RestoreFlags = Where & { json?: boolean; out?: string; toVolume?: string; group?: boolean };

/**
 * One archived point into a new raw image (`--out`) or a new replica volume
 * (`--to-volume`), with a progress bar on a terminal: what `restore` does per volume.
 */
async function restoreOne(store: ObjectStore, volume: string, n: number, target: string, asVolume: boolean, json: boolean | undefined) {
  const { restorePoint, restoreToNewVolume } = await archiveLib();
  const bar = await progressBar(!json, `restoring ${volume} point ${n} [{bar}] {percentage}% | {value}/{total} MiB | ETA {eta}s`);
  const onProgress = (p: { bytesDone: number; bytesTotal: number }) => bar.update(Math.round(p.bytesDone / MiB), Math.round(p.bytesTotal / MiB));
  try {
    if (!asVolume) return await restorePoint({ store, volumeId: volume, n, path: target, onProgress });
    // A node pairs a replica with its source by volume id, which is the configured name: the archive's volume id.
    const seeded = await restoreToNewVolume({ store, volumeId: volume, n, dir: target, role: 'replica', id: volume, name: volume, onProgress });
    await seeded.volume.shutdown();
    return seeded.result;
  } finally {
    bar.stop();
  }
}

/**
 * `archive restore V N --group`: every volume of V's consistency group at point N's
 * scheduled time (a group closes its points at one time; retention keeps such times in
 * all its volumes), each into `<out>/<volume>.raw` or `<to-volume>/<volume>`. Nothing is
 * written unless every member has a point at that time and no target exists, and nothing is
 * kept unless every member was restored: each is restored under `<target>.group-partial`
 * and renamed to its target once all are, so a failure (a full disk, a damaged object)
 * never leaves a group half restored, some members at the point and some missing.
 */
async function restoreGroup(volume: string, n: number, o: RestoreFlags): Promise<void> {
  if (o.store !== undefined) throw new HeadstartError('ARCHIVE_CONFIG', 'archive restore --group: the group comes from the node configuration (-c FILE), not from --store');
  const { listPoints } = await archiveLib();
  const started = performance.now();
  const done = await withTargets({ ...o, volume: undefined }, async (all) => {
    const t = all.find((x) => x.volumeId === volume);
    if (t === undefined) throw new HeadstartError('ARCHIVE_CONFIG', `${o.config} has no archived volume ${JSON.stringify(volume)}`);
    if (t.groupName === null) throw new HeadstartError('ARCHIVE_CONFIG', `volume ${volume} is in no consistency group in ${o.config}: restore it without --group`);
    const owned = await listPoints({ store: t.store, volumeId: volume });
    const own = owned.find((p) => p.n === n);
    if (own === undefined) throw new HeadstartError('ARCHIVE_NOT_FOUND', `volume ${volume} has no archived point ${n} (see archive list)`);
    const at = new Date(own.scheduledAt).toISOString();
    const plan: { volume: string; store: ObjectStore; n: number; target: string }[] = [];
    const missing: string[] = [];
    for (const name of [volume, ...t.group]) {
      const m = all.find((x) => x.volumeId === name);
      const points = m === undefined ? [] : name === volume ? owned : await listPoints({ store: m.store, volumeId: name });
      const p = points.find((q) => q.scheduledAt === own.scheduledAt);
      if (m === undefined || p === undefined) missing.push(name);
      else plan.push({ volume: name, store: m.store, n: p.n, target: o.out !== undefined ? join(o.out, `${name}.raw`) : join(o.toVolume!, name) });
    }
    if (missing.length > 0) throw new HeadstartError('ARCHIVE_NOT_FOUND', `group ${t.groupName} cannot be restored at ${at}: no point scheduled then in ${missing.join(', ')} (archive list shows each volume's points)`);
    const staged = (x: { target: string }) => `${x.target}.group-partial`;
    const exists = (path: string) => stat(path).then(() => true, () => false);
    for (const x of plan) if (await exists(x.target)) throw new HeadstartError('ARCHIVE_CONFIG', `restore target ${x.target} exists; restore never overwrites, choose a new directory`);
    for (const x of plan) if (await exists(staged(x))) throw new HeadstartError('ARCHIVE_CONFIG', `${staged(x)} exists (an interrupted group restore left it): remove it, or choose a new directory`);
    await mkdir(o.out ?? o.toVolume!, { recursive: true });
    const results = [];
    for (const x of plan) {
      try {
        const r = await restoreOne(x.store, x.volume, x.n, staged(x), o.toVolume !== undefined, o.json);
        results.push({ volume: x.volume, n: r.n, target: x.target, size: r.size, bytesWritten: r.bytesWritten });
      } catch (err) {
        // All or nothing: the members restored so far go too. Say which failed, keeping the cause's code.
        const removed = await Promise.all(plan.map((y) => rm(staged(y), { recursive: true, force: true }).then(() => null, (e: Error) => `${staged(y)} (${e.message})`)));
        const left = removed.filter((r) => r !== null);
        const kept = left.length === 0 ? 'nothing of the group was kept' : `could not remove ${left.join(', ')}`;
        throw new HeadstartError(isHeadstartError(err) ? err.code : 'VOLUME_IO', `group ${t.groupName}: restoring ${x.volume} to ${x.target} failed (${(err as Error).message}); ${kept}`, { cause: err });
      }
    }
    for (const x of plan) await rename(staged(x), x.target);
    return { group: t.groupName, scheduledAt: own.scheduledAt, at, volumes: results };
  });
  const seconds = (performance.now() - started) / 1000;
  out(o.json, { group: done.group, scheduledAt: done.scheduledAt, volumes: done.volumes, seconds }, () =>
    [
      `restored group ${done.group} at ${done.at} (${seconds.toFixed(1)} s):`,
      ...done.volumes.map((v) => `  ${v.volume} point ${v.n} to ${v.target}: ${mib(v.size)}, ${mib(v.bytesWritten)} of data`),
      ...(o.toVolume !== undefined ? ['each volume is a replica that committed its point; add them as <dataDir>/volumes/<name> of a node listing them as replicas'] : []),
    ].join('\n'),
  );
}

/** Adds the archive subcommands to `cmd` (made with program.command('archive'), so they inherit its error handling). */
export function archiveCommands(cmd: Command, setCode: (code: number) => void, exit: ArchiveExit): Command {
  cmd.description('List, restore, prune and verify snapshot points kept in an object-store archive');
  const where = (c: Command, volumeRequired = false) => {
    c.addOption(new Option('--store <url>', 'the archive: a directory, dir:PATH or s3://bucket/prefix?endpoint=...&region=...&pathStyle=true (default: each volume\'s archive.store in the configuration)'));
    c.addOption(new Option('-c, --config <file>', 'node configuration file (used without --store)').default('headstart.yaml'));
    if (!volumeRequired) c.option('--volume <name>', 'only this volume');
    c.option('--json', 'print one JSON object');
    return c;
  };

  where(cmd.command('list').description('Every archived point per volume: number, scheduled time, bytes it needs, bytes only it needs'))
    .action(async (o: Where & { json?: boolean }) => {
      const { listPoints } = await archiveLib();
      const volumes = await withTargets(o, async (list) => {
        const res: { volume: string; store: string; points: PointInfo[]; damaged: { n: number; why: string }[] }[] = [];
        for (const t of list) {
          const damaged: { n: number; why: string }[] = [];
          const points = await listPoints({ store: t.store, volumeId: t.volumeId, onDamaged: (n, why) => damaged.push({ n, why }) });
          res.push({ volume: t.volumeId, store: t.store.description, points, damaged });
        }
        return res;
      });
      // A damaged manifest is said (exit 4, as verify does), and the good points still listed.
      if (volumes.some((v) => v.damaged.length > 0)) setCode(exit.notEqual);
      out(o.json, { volumes }, () =>
        volumes.length === 0
          ? 'the archive holds no volume'
          : volumes
              .map((v) =>
                [
                  `volume ${v.volume} in ${v.store}: ${v.points.length} point(s)${v.damaged.length > 0 ? `, ${v.damaged.length} DAMAGED` : ''}`,
                  `   point  scheduled                       needs MiB    only MiB`,
                  ...v.points.map(pointLine),
                  ...v.damaged.map((d) => `  DAMAGED point ${d.n}: ${d.why}; run headstart archive verify`),
                ].join('\n'),
              )
              .join('\n'),
      );
    });

  where(cmd.command('restore').argument('<volume>', 'the archived volume').argument('<point>', 'the point number (see archive list)', pointArg).description('Rebuild an archived point into a new raw image (--out) or a new replica volume (--to-volume) that its source can catch up'), true)
    .option('--out <file>', 'write a sparse raw image here (never overwrites)')
    .option('--to-volume <dir>', 'create a replica volume here holding the point as committed (then add it to a node as a replica of its source)')
    .option('--group', "restore the volume's whole consistency group (from -c) at the point's scheduled time: --out and --to-volume are then directories, one image or volume per member")
    .action(async (volume: string, n: number, o: RestoreFlags) => {
      if ((o.out === undefined) === (o.toVolume === undefined)) throw new HeadstartError('ARCHIVE_CONFIG', 'archive restore: give exactly one of --out FILE or --to-volume DIR');
      if (o.group === true) return restoreGroup(volume, n, o);
      const target = o.out ?? o.toVolume!;
      const started = performance.now();
      const result = await withTargets({ ...o, volume }, ([t]) => restoreOne(t.store, volume, n, target, o.toVolume !== undefined, o.json));
      const seconds = (performance.now() - started) / 1000;
      out(o.json, { volume, n: result.n, target, size: result.size, bytesWritten: result.bytesWritten, seconds, scheduledAt: result.point.scheduledAt }, () =>
        `restored point ${result.n} of ${volume} (scheduled ${new Date(result.point.scheduledAt).toISOString()}) to ${target}: ${mib(result.size)}, ${mib(result.bytesWritten)} of data, ${seconds.toFixed(1)} s` +
          (o.toVolume !== undefined ? `\nthe volume is a replica that committed point ${result.n}; add it as <dataDir>/volumes/${volume} of a node listing it as a replica, and its source sends only what differs` : ''),
      );
    });

  where(cmd.command('prune').description('Apply retention: delete points the policy does not keep, and objects no kept point needs (a configured consistency group: the same times in all its volumes)'))
    .option('--dry-run', 'only show what would be deleted')
    .option('--daily <n>', 'keep the newest point of each of the last N days', countArg)
    .option('--weekly <n>', 'keep the newest point of each of the last N weeks', countArg)
    .option('--monthly <n>', 'keep the newest point of each of the last N months', countArg)
    .option('--keep-last <n>', 'keep the N newest points', countArg)
    .option('--max-bytes <size>', 'cap on stored bytes (least valuable points go first)')
    .action(async (o: Where & { json?: boolean; dryRun?: boolean; daily?: number; weekly?: number; monthly?: number; keepLast?: number; maxBytes?: string }) => {
      const { prune } = await archiveLib();
      let maxBytes: number | undefined;
      if (o.maxBytes !== undefined) {
        const { parseSize } = await nodeLib();
        maxBytes = parseSize(o.maxBytes);
        if (!Number.isSafeInteger(maxBytes) || maxBytes <= 0) throw new HeadstartError('ARCHIVE_CONFIG', `--max-bytes: not a size: ${JSON.stringify(o.maxBytes)}`);
      }
      const flags: RetentionPolicy = Object.fromEntries(
        Object.entries({ daily: o.daily, weekly: o.weekly, monthly: o.monthly, keepLast: o.keepLast, maxBytes }).filter(([, v]) => v !== undefined),
      );
      const volumes = await withTargets(o, async (list) => {
        const res = [];
        for (const t of list) {
          // Flags override the configured retention key by key.
          const policy = { ...t.retention, ...flags };
          if (Object.keys(policy).length === 0) throw new HeadstartError('ARCHIVE_CONFIG', `archive prune: no retention for ${t.volumeId}; give --daily/--weekly/--monthly/--keep-last/--max-bytes or configure archive.retention`);
          res.push({ volume: t.volumeId, policy, ...(await prune({ store: t.store, volumeId: t.volumeId, policy, group: t.group, dryRun: o.dryRun === true })) });
        }
        return res;
      });
      out(o.json, { dryRun: o.dryRun === true, volumes }, () =>
        volumes
          .map((v) =>
            [
              `volume ${v.volume}: ${v.dryRun ? 'would delete' : 'deleted'} ${v.deletedPoints.length} point(s)${v.deletedPoints.length > 0 ? ` (${v.deletedPoints.join(', ')})` : ''}, ${v.deletedObjects.length} object(s), ${mib(v.freedBytes)}; ${mib(v.bytesBefore)} -> ${mib(v.bytesAfter)}${v.capExceeded ? ' (over the byte cap: protected or newest points alone exceed it)' : ''}`,
              `  kept: ${v.kept.map((k) => `${k.n} (${k.reasons.join('+')})`).join(', ') || '-'}`,
              ...v.damaged.map((d) => `  DAMAGED point ${d.n} (kept; retention counts only points that restore): ${d.why}; run headstart archive verify`),
            ].join('\n'),
          )
          .join('\n'),
      );
    });

  where(cmd.command('verify').description('Check that every manifest decodes and every object it names exists (--deep: and passes its checksums)'))
    .option('--deep', 'read every object and check its checksums and pinned hash')
    .option('--point <n...>', 'only these points', (v: string, prev: number[] | undefined) => [...(prev ?? []), pointArg(v)])
    .action(async (o: Where & { json?: boolean; deep?: boolean; point?: number[] }) => {
      const { verifyArchive } = await archiveLib();
      const bar = await progressBar(!o.json, `verifying: {value} objects checked`);
      const volumes = await withTargets(o, async (list) => {
        const res = [];
        try {
          for (const t of list) {
            const report = await verifyArchive({ store: t.store, volumeId: t.volumeId, deep: o.deep === true, points: o.point, onProgress: (p) => bar.update(p.objectsDone) });
            // An archive with nothing to restore is not OK: a mistyped --volume, or every manifest gone.
            const none = report.points === 0 ? [{ n: -1, key: `${t.volumeId}/manifests/`, code: 'ARCHIVE_NOT_FOUND', message: `volume ${t.volumeId} has no archived point in ${t.store.description}` }] : [];
            res.push({ volume: t.volumeId, ...report, ok: report.ok && none.length === 0, problems: [...none, ...report.problems] });
          }
        } finally {
          bar.stop();
        }
        return res;
      });
      const ok = volumes.every((v) => v.ok);
      out(o.json, { ok, deep: o.deep === true, volumes }, () =>
        volumes
          .map((v) =>
            [
              `volume ${v.volume}: ${v.ok ? 'OK' : 'DAMAGED'}, ${v.points} point(s), ${v.objects} object(s), ${mib(v.bytes)} ${o.deep ? 'read and checked' : 'present'}`,
              ...v.problems.map((p) => (p.n >= 0 ? `  point ${p.n}: ${p.code} ${p.key}: ${p.message}` : `  ${p.code}: ${p.message}`)),
            ].join('\n'),
          )
          .join('\n'),
      );
      setCode(ok ? exit.ok : exit.notEqual);
    });

  return cmd;
}
