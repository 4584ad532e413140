/**
 * The node's configuration: one YAML file. Validated with zod so every mistake is reported
 * with the path of the bad key ("volumes[1].schedule.every: ..."), before anything starts.
 * Sizes ("1GiB"), durations ("90s", "5m") and rates ("20MB/s") are written the way an
 * operator says them. docs/configuration.md is the reference for every key.
 */
import { readFile } from 'node:fs/promises';
import { dirname, isAbsolute, resolve } from 'node:path';
import { parse as parseYaml } from 'yaml';
import { z } from 'zod';
import { CronExpressionParser } from 'cron-parser';
import { HeadstartError } from '@headstart/errors';
import { parseStoreUrl, type StoreSpec } from '@headstart/archive';
import { parseDays, parseTimeOfDay, type ClockWindow, type RateWindow } from './rate-windows';
import type { ScheduleWindow } from './schedule';

const UNITS: Record<string, number> = { '': 1, b: 1, k: 1e3, kb: 1e3, m: 1e6, mb: 1e6, g: 1e9, gb: 1e9, t: 1e12, tb: 1e12, kib: 2 ** 10, mib: 2 ** 20, gib: 2 ** 30, tib: 2 ** 40 };

/** "4GiB", "512 MiB", "1e6", 4096 -> bytes. */
export function parseSize(value: string | number): number {
  if (typeof value === 'number') return value;
  const m = /^\s*(\d+(?:\.\d+)?(?:e\d+)?)\s*([a-z]*)\s*$/i.exec(value);
  const unit = m ? UNITS[m[2].toLowerCase()] : undefined;
  if (!m || unit === undefined) return NaN;
  return Math.round(Number(m[1]) * unit);
}

/** "90s", "5m", "1h", "250ms", 60 (seconds) -> milliseconds. */
export function parseDuration(value: string | number): number {
  if (typeof value === 'number') return value * 1000;
  const m = /^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$/i.exec(value);
  if (!m) return NaN;
  const factor = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 }[(m[2] ?? 's').toLowerCase() as 'ms'];
  return Math.round(Number(m[1]) * factor);
}

/** "20MB/s", "160Mbit/s", 1000000 (bytes/s) -> bytes/s. */
export function parseRate(value: string | number): number {
  if (typeof value === 'number') return value;
  const bits = /^\s*(.*?)\s*(k|m|g)?bit\/s\s*$/i.exec(value);
  if (bits) return (parseSize(bits[1] + (bits[2] ?? '')) / 8);
  return parseSize(value.replace(/\/s\s*$/i, ''));
}

/**
 * A value as the operator wrote it (YAML's .inf is a number JSON cannot show: "null"). A
 * YAML .nan is taken as a number too (z.nan beside z.number), so it gets the key's own message,
 * not zod's "Invalid input".
 */
const shown = (v: string | number) => (typeof v === 'number' ? String(v) : JSON.stringify(v));
/**
 * The longest duration any key takes: a year and a day. Longer is a typo (a YAML 1e300),
 * and past the range of a date (8.64e15 ms) a schedule's next time cannot even be printed.
 */
const MAX_DURATION_MS = 366 * 86_400_000;
const size = z.union([z.number(), z.nan(), z.string()]).transform((v, ctx) => {
  const n = parseSize(v);
  if (!Number.isSafeInteger(n) || n <= 0) ctx.addIssue({ code: z.ZodIssueCode.custom, message: `not a size: ${shown(v)} (write e.g. 4GiB, 512MiB, 1048576)` });
  return n;
});
const duration = z.union([z.number(), z.nan(), z.string()]).transform((v, ctx) => {
  const n = parseDuration(v);
  if (!Number.isFinite(n) || n <= 0) ctx.addIssue({ code: z.ZodIssueCode.custom, message: `${Number.isFinite(n) ? 'not a positive duration' : 'not a duration'}: ${shown(v)} (write e.g. 90s, 5m, 1h)` });
  else if (n > MAX_DURATION_MS) ctx.addIssue({ code: z.ZodIssueCode.custom, message: `${shown(v)} is longer than 366d, the longest duration taken` });
  return n;
});
const rate = z.union([z.number(), z.nan(), z.string()]).transform((v, ctx) => {
  const n = parseRate(v);
  if (!Number.isFinite(n) || n <= 0) ctx.addIssue({ code: z.ZodIssueCode.custom, message: `not a rate: ${shown(v)} (write e.g. 20MB/s, 100Mbit/s)` });
  return n;
});
/** The clock part of a window as written: `days` (default daily), `from`, `to`. */
const clockFields = { days: z.string().default('daily'), from: z.string(), to: z.string() };
/** The clock part of a window (days, from, to; rate-windows.ts), parsed, each error at its key. */
function clockWindow(w: { days: string; from: string; to: string }, ctx: z.RefinementCtx): ClockWindow {
  const field = <T>(path: string, parse: () => T, fallback: T): T => {
    try {
      return parse();
    } catch (err) {
      ctx.addIssue({ code: z.ZodIssueCode.custom, path: [path], message: (err as Error).message });
      return fallback;
    }
  };
  return {
    days: field('days', () => parseDays(w.days), null),
    from: field('from', () => parseTimeOfDay(w.from), 0),
    to: field('to', () => parseTimeOfDay(w.to), 0),
    label: `${w.days} ${w.from}-${w.to}`,
  };
}
/**
 * A window of a link cap (rate-windows.ts): `{ days?: mon-fri, from: "08:00", to: "18:00",
 * rate: 10MB/s | none }`, in the node's local time.
 */
const rateWindow = z
  .object({
    ...clockFields,
    rate: z.union([z.literal('none'), rate], { errorMap: () => ({ message: 'a window needs a rate: e.g. 10MB/s, or none for no cap' }) }),
  })
  .strict()
  .transform((w, ctx): RateWindow => ({ ...clockWindow(w, ctx), rate: w.rate === 'none' ? null : w.rate }));
/**
 * A window of a schedule (schedule.ts): `{ days?: mon-fri, from: "08:00", to: "18:00",
 * every: 5m | none }`: the interval inside it, or no points.
 */
const scheduleWindow = z
  .object({
    ...clockFields,
    every: z.union([z.literal('none'), duration], { errorMap: () => ({ message: 'a window needs its interval: e.g. 5m, or none for no points inside it' }) }),
  })
  .strict()
  .superRefine((w, ctx) => {
    if (typeof w.every === 'number' && w.every > 0 && w.every < 1000) ctx.addIssue({ code: z.ZodIssueCode.custom, path: ['every'], message: 'snapshot points at least 1s apart' });
  })
  .transform((w, ctx): ScheduleWindow => ({ ...clockWindow(w, ctx), every: w.every === 'none' ? null : w.every }));
const rateWindows = z.array(rateWindow).max(64, 'at most 64 windows');

const address = z.string().transform((v, ctx) => {
  const m = /^(\[[0-9a-f:]+\]|[^:\s]+):(\d{1,5})$/i.exec(v);
  const port = m ? Number(m[2]) : NaN;
  if (!m || port > 65535) {
    ctx.addIssue({ code: z.ZodIssueCode.custom, message: `not a host:port address: ${JSON.stringify(v)}` });
    return { host: '', port: 0 };
  }
  return { host: m[1].replace(/^\[|\]$/g, ''), port };
});
const name = z.string().regex(/^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/, 'names use letters, digits, ".", "_" and "-" (at most 64)');

/** The shortest time between two points of a cron schedule (ms), over its first 64 points; undefined if it cannot be read (reported at its key). */
function shortestCronGap(expression: string): number | undefined {
  try {
    const times = CronExpressionParser.parse(expression, { currentDate: new Date(0) });
    let last = times.next().getTime();
    let shortest = Infinity;
    for (let k = 0; k < 64 && times.hasNext(); k++) {
      const t = times.next().getTime();
      shortest = Math.min(shortest, t - last);
      last = t;
    }
    return Number.isFinite(shortest) ? shortest : undefined;
  } catch {
    return undefined;
  }
}

const schedule = z
  .object({
    every: duration.optional(),
    cron: z.string().optional(),
    /** With `every`: points fall at origin + k * every (epoch ms or an ISO time); default: aligned to the clock. */
    origin: z
      .union([z.number(), z.string()])
      .transform((v, ctx) => {
        const t = typeof v === 'number' ? v : Date.parse(v);
        if (!Number.isFinite(t)) ctx.addIssue({ code: z.ZodIssueCode.custom, message: `not a time: ${JSON.stringify(v)}` });
        return t;
      })
      .optional(),
    /**
     * Load leveling (leveling.ts): the node chooses where in the interval this volume's points
     * fall (a fixed offset from the clock's marks), so the closes of the volumes that share
     * a link take turns instead of bursting together. The interval stays `every`.
     */
    level: z.boolean().optional(),
    /** The interval by time of day and week: the first window that holds sets it, else `every`. */
    windows: z.array(scheduleWindow).max(64, 'at most 64 windows').optional(),
  })
  .strict()
  .superRefine((s, ctx) => {
    if ((s.every === undefined) === (s.cron === undefined)) ctx.addIssue({ code: z.ZodIssueCode.custom, message: 'give exactly one of "every" or "cron"' });
    if (s.level === true && s.cron !== undefined) ctx.addIssue({ code: z.ZodIssueCode.custom, path: ['level'], message: 'leveling needs "every": the times of a cron schedule are the operator\'s, the node does not move them' });
    if (s.windows !== undefined && s.cron !== undefined) ctx.addIssue({ code: z.ZodIssueCode.custom, path: ['windows'], message: 'windows change "every" by the time of day; a cron schedule has its own calendar: write it there' });
    if (s.windows !== undefined && s.level === true) ctx.addIssue({ code: z.ZodIssueCode.custom, path: ['level'], message: 'leveling needs one interval: not with windows (yet)' });
    if (s.level === true && s.origin !== undefined) ctx.addIssue({ code: z.ZodIssueCode.custom, path: ['level'], message: '"level" and "origin" both set when the points fall: give one of them' });
    if (s.every !== undefined && s.every > 0 && s.every < 1000) ctx.addIssue({ code: z.ZodIssueCode.custom, path: ['every'], message: 'snapshot points at least 1s apart' });
    if (s.cron !== undefined) {
      try {
        CronExpressionParser.parse(s.cron);
      } catch (err) {
        ctx.addIssue({ code: z.ZodIssueCode.custom, path: ['cron'], message: `bad cron expression: ${(err as Error).message}` });
      }
    }
  });

const policy = z
  .object({
    name: z.enum(['predictive', 'continuous', 'at-snapshot']).default('predictive'),
    /** Start rule factor: pre-send when TS < K * D / B + L. */
    K: z.number().positive().optional(),
    /** Start rule shift, seconds. */
    L: z.number().optional(),
    /** Skip blocks whose rewrite probability is at least PT. */
    PT: z.number().min(0).max(1).optional(),
    /**
     * Most dirty blocks of an open point the planner tracks to pre-send; those written
     * beyond ship at the close. Default 262,144 (1 GiB at 4 KiB): a 1 TiB volume's
     * planner stays under 64 MiB (60 MiB measured). More costs ~150 bytes a block: with
     * 1,048,576 the same volume's planner took 171 MiB.
     */
    maxOpenBlocks: z.number().int().min(1).max(2 ** 26 - 1).optional(),
    /**
     * Planner seconds per wall-clock second: 1 for a real volume. A time-compressed replay
     * of a trace (demo --trace, bench:replay) sets its speedup, so the planner plans in the
     * workload's own time.
     */
    timeScale: z.number().positive().max(10_000).optional(),
  })
  .strict()
  .default({ name: 'predictive' });

const count = z.number().int().min(0).max(100_000);

/**
 * A volume's archive (DESIGN.md "The archive"): one more sink that stores its snapshot
 * points in an object store. S3 credentials come from the environment / AWS chain only:
 * a URL with user:password is refused by parseStoreUrl.
 */
const archive = z
  .object({
    /** A directory (dir:PATH or a plain path, relative to the config file) or s3://bucket/prefix?endpoint=...&region=...&pathStyle=true. */
    store: z.string().transform((v, ctx) => {
      try {
        return parseStoreUrl(v);
      } catch (err) {
        ctx.addIssue({ code: z.ZodIssueCode.custom, message: (err as Error).message });
        return { kind: 'dir', path: '' } as StoreSpec;
      }
    }),
    retention: z
      .object({ daily: count.optional(), weekly: count.optional(), monthly: count.optional(), keepLast: count.optional(), maxBytes: size.optional() })
      .strict()
      .optional(),
    /** Catch the archive up at most this often (all points closed meanwhile go up together); default after every close. */
    every: duration.optional(),
    /** Parallel chunk uploads. */
    concurrency: z.number().int().min(1).max(256).optional(),
  })
  .strict();

const volume = z
  .object({
    name,
    size,
    blockSize: z.number().int().default(4096),
    role: z.enum(['primary', 'replica']).default('primary'),
    schedule: schedule.optional(),
    policy,
    /** Recovery-point target: the newest committed point should never be older than this. */
    rpoTarget: duration.optional(),
    /** Peers (by name) this volume ships to, when it is primary. */
    sinks: z.array(name).default([]),
    /**
     * Consistency group: the volumes of a group close their points in one instant, commit
     * them together on the replica, and are promoted and demoted together. Same name on both sites.
     */
    group: name.optional(),
    /** Record every write the NBD export receives into this trace file (headstart format), to replay it later. */
    record: z.string().optional(),
    archive: archive.optional(),
    /**
     * Scheduled verification (primary side): every `every`, take a point, hold the schedule
     * until the sink committed it, read the replica's read-only export at `replica`
     * (nbd://host:port/export) and compare range hashes. Status, metrics and the log report it.
     */
    verify: z.object({ every: duration, replica: z.string().regex(/^nbd:\/\/[^/]+\/.*$/, 'nbd://host[:port]/export') }).strict().optional(),
  })
  .strict();

/** ws://host:port or wss://host:port of a peer's replication listener (pairing checks a token's and --url by it too). */
export const PEER_URL = /^wss?:\/\/[^\s/]+(:\d+)?\/?$/;

const peer = z
  .object({
    name,
    /** ws://host:port or wss://host:port of the peer's replication listener. */
    url: z.string().regex(PEER_URL, 'a ws:// or wss:// URL'),
    rateLimit: rate.optional(),
    /** The cap by time of day and week: the first window that holds sets it, else rateLimit. */
    rateWindows: rateWindows.optional(),
    /** Compress frames on the wire (permessage-deflate): for slow WAN links and compressible data. */
    compress: z.boolean().default(false),
    /** PEM file of the CA that signed the peer's certificate (wss), or the peer's own certificate (pinned by pairing). */
    ca: z.string().optional(),
    /**
     * Check that the peer's certificate names the host in `url` (wss). Pairing pins the peer's
     * self-signed certificate as `ca` and sets this false: the certificate is the identity,
     * whatever name or address reaches the peer.
     */
    verifyHost: z.boolean().default(true),
  })
  .strict();

export const configSchema = z
  .object({
    node: z
      .object({
        name,
        /** Where volumes, staging and state live; relative to the config file. */
        dataDir: z.string().default('./data'),
        /** The pairing secret, inline or from a file (one of them). */
        secret: z.string().min(16, 'a secret of at least 16 characters').optional(),
        secretFile: z.string().optional(),
      })
      .strict(),
    listen: z
      .object({
        nbd: address.optional(),
        peers: address.optional(),
        dashboard: address.optional(),
        metrics: address.optional(),
        admin: address.default('127.0.0.1:7901'),
      })
      .strict()
      .default({}),
    dashboard: z.object({ token: z.string().min(8).optional() }).strict().default({}),
    tls: z.object({ cert: z.string(), key: z.string() }).strict().optional(),
    /** Link load cap shared by every volume of this node (bytes/s). */
    linkCap: rate.optional(),
    /** linkCap by time of day and week (as peers[].rateWindows). */
    linkCapWindows: rateWindows.optional(),
    peers: z.array(peer).default([]),
    volumes: z.array(volume).default([]),
  })
  .strict()
  .superRefine((c, ctx) => {
    const seen = new Set<string>();
    c.volumes.forEach((v, i) => {
      if (seen.has(v.name)) ctx.addIssue({ code: z.ZodIssueCode.custom, path: ['volumes', i, 'name'], message: `volume ${v.name} is listed twice` });
      seen.add(v.name);
      const bs = v.blockSize;
      if (bs < 512 || bs > 1 << 20 || (bs & (bs - 1)) !== 0) ctx.addIssue({ code: z.ZodIssueCode.custom, path: ['volumes', i, 'blockSize'], message: 'a power of two from 512 to 1048576' });
      else if (v.size % bs !== 0) ctx.addIssue({ code: z.ZodIssueCode.custom, path: ['volumes', i, 'size'], message: `must be a multiple of the block size ${bs}` });
      v.sinks.forEach((s, j) => {
        if (!c.peers.some((p) => p.name === s)) ctx.addIssue({ code: z.ZodIssueCode.custom, path: ['volumes', i, 'sinks', j], message: `no peer named ${s} in "peers"` });
      });
      if (v.archive !== undefined && v.sinks.includes('archive')) {
        ctx.addIssue({ code: z.ZodIssueCode.custom, path: ['volumes', i, 'sinks'], message: 'the sink name "archive" is the archive\'s own; rename that peer' });
      }
      if (v.archive !== undefined && v.schedule === undefined) {
        ctx.addIssue({ code: z.ZodIssueCode.custom, path: ['volumes', i, 'schedule'], message: 'an archived volume needs a snapshot schedule (the archive stores its points)' });
      }
      if (v.role === 'primary' && v.sinks.length > 0 && v.schedule === undefined) {
        ctx.addIssue({ code: z.ZodIssueCode.custom, path: ['volumes', i, 'schedule'], message: 'a primary volume with sinks needs a snapshot schedule' });
      }
      // The RPO age reaches the interval before every point: a target below it is missed at every point.
      // Intervals refused at their own key (not a duration, over 366d) are not judged again here.
      const intervals = [v.schedule?.every, ...(v.schedule?.windows ?? []).map((w) => w.every)].filter((x): x is number => typeof x === 'number' && x > 0 && x <= MAX_DURATION_MS);
      const longest = intervals.length > 0 ? Math.max(...intervals) : undefined;
      if (v.rpoTarget !== undefined && longest !== undefined && v.rpoTarget <= longest) {
        ctx.addIssue({ code: z.ZodIssueCode.custom, path: ['volumes', i, 'rpoTarget'], message: `${v.rpoTarget / 1000} s is not more than the schedule's interval (${longest / 1000} s): the recovery point reaches that age before every point, so the target would be missed all the time; give it the interval plus the time a point takes to ship` });
      }
      // A cron schedule's points are at least its shortest gap apart: a target not above it is missed before every point.
      const gap = v.schedule?.cron === undefined ? undefined : shortestCronGap(v.schedule.cron);
      if (v.rpoTarget !== undefined && gap !== undefined && v.rpoTarget <= gap) {
        ctx.addIssue({ code: z.ZodIssueCode.custom, path: ['volumes', i, 'rpoTarget'], message: `${v.rpoTarget / 1000} s is not more than the time between the cron schedule's points (at least ${gap / 1000} s): the recovery point reaches that age before every point, so the target would be missed all the time; give it that time plus the time a point takes to ship` });
      }
    });
    // A group's volumes close together: one schedule, and the same sinks (each sink commits the group as one) and archive.
    const firstOfGroup = new Map<string, number>();
    c.volumes.forEach((v, i) => {
      if (v.group === undefined) return;
      const first = firstOfGroup.get(v.group);
      if (first === undefined) {
        firstOfGroup.set(v.group, i);
        return;
      }
      const f = c.volumes[first];
      // (a window's days are a Set, written {} by JSON; its label, as written, tells them apart)
      if (JSON.stringify(f.schedule ?? null) !== JSON.stringify(v.schedule ?? null)) {
        ctx.addIssue({ code: z.ZodIssueCode.custom, path: ['volumes', i, 'schedule'], message: `volumes of group ${v.group} close together: the same schedule as ${f.name}` });
      }
      if ([...f.sinks].sort().join() !== [...v.sinks].sort().join()) {
        ctx.addIssue({ code: z.ZodIssueCode.custom, path: ['volumes', i, 'sinks'], message: `volumes of group ${v.group} ship together: the same sinks as ${f.name} (${f.sinks.join(', ') || 'none'})` });
      }
      if (f.role !== v.role) {
        ctx.addIssue({ code: z.ZodIssueCode.custom, path: ['volumes', i, 'role'], message: `volumes of group ${v.group} change roles together: the same role as ${f.name}` });
      }
      if (JSON.stringify(f.archive ?? null) !== JSON.stringify(v.archive ?? null)) {
        ctx.addIssue({ code: z.ZodIssueCode.custom, path: ['volumes', i, 'archive'], message: `volumes of group ${v.group} are archived together (one store, one retention, restorable at the same points): the same archive as ${f.name}, or none on all` });
      }
    });
    if (c.volumes.some((v) => v.role === 'replica') && c.listen.peers === undefined) {
      ctx.addIssue({ code: z.ZodIssueCode.custom, path: ['listen', 'peers'], message: 'a node with replica volumes must listen for peers' });
    }
    if ((c.peers.length > 0 || c.volumes.some((v) => v.role === 'replica')) && c.node.secret === undefined && c.node.secretFile === undefined) {
      ctx.addIssue({ code: z.ZodIssueCode.custom, path: ['node', 'secret'], message: 'peers need a pairing secret (node.secret or node.secretFile; `headstart pair` sets it up)' });
    }
  });

export type NodeConfig = z.output<typeof configSchema>;
export type VolumeConfig = NodeConfig['volumes'][number];
export type PeerConfig = NodeConfig['peers'][number];

/** Validates an already-parsed object; `source` names it in errors. Paths become absolute against `baseDir`. */
export function validateConfig(raw: unknown, source = 'configuration', baseDir = process.cwd()): NodeConfig {
  const result = configSchema.safeParse(raw ?? {});
  if (!result.success) {
    const lines = result.error.issues.map((i) => `  ${formatPath(i.path)}: ${i.message}`);
    throw new HeadstartError('CONFIG_INVALID', `${source} is invalid:\n${lines.join('\n')}`, { details: { issues: result.error.issues } });
  }
  const c = result.data;
  const abs = (p: string) => (isAbsolute(p) ? p : resolve(baseDir, p));
  return {
    ...c,
    node: { ...c.node, dataDir: abs(c.node.dataDir), secretFile: c.node.secretFile === undefined ? undefined : abs(c.node.secretFile) },
    tls: c.tls === undefined ? undefined : { cert: abs(c.tls.cert), key: abs(c.tls.key) },
    peers: c.peers.map((p) => ({ ...p, ca: p.ca === undefined ? undefined : abs(p.ca) })),
    volumes: c.volumes
      .map((v) => (v.archive?.store.kind === 'dir' ? { ...v, archive: { ...v.archive, store: { ...v.archive.store, path: abs(v.archive.store.path) } } } : v))
      .map((v) => (v.record === undefined ? v : { ...v, record: abs(v.record) })),
  };
}

export async function loadConfig(path: string): Promise<NodeConfig> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (err) {
    throw new HeadstartError('CONFIG_INVALID', `cannot read configuration ${path}: ${(err as Error).message}`, { cause: err });
  }
  let raw: unknown;
  try {
    raw = parseYaml(text, { prettyErrors: true });
  } catch (err) {
    throw new HeadstartError('CONFIG_INVALID', `${path} is not valid YAML: ${(err as Error).message}`, { cause: err });
  }
  return validateConfig(raw, path, dirname(resolve(path)));
}

/** The secret, from the inline value or the secret file. */
export async function readSecret(config: NodeConfig): Promise<string | null> {
  if (config.node.secret !== undefined) return config.node.secret;
  if (config.node.secretFile === undefined) return null;
  try {
    const s = (await readFile(config.node.secretFile, 'utf8')).trim();
    if (s.length < 16) throw new Error('shorter than 16 characters');
    return s;
  } catch (err) {
    throw new HeadstartError('CONFIG_INVALID', `node.secretFile ${config.node.secretFile}: ${(err as Error).message}`, { cause: err });
  }
}

function formatPath(path: readonly PropertyKey[]): string {
  if (path.length === 0) return '(top level)';
  return path.map((p, i) => (typeof p === 'number' ? `[${p}]` : (i === 0 ? '' : '.') + String(p))).join('');
}
