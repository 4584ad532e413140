/** Human output of `headstart status`: one block per volume, one line per sink, units always shown. */
import type { LinkCapView, NodeStatus, VolumeView } from '@headstart/node';

const MiB = 1 << 20;
/** A replica's commit writing its image for this long is said in status (reads of it wait meanwhile). */
const BETWEEN_POINTS_SHOWN_MS = 10_000;
const seconds = (ms: number | null) => (ms === null ? '-' : `${(ms / 1000).toFixed(1)} s`);
/** Binary units, as block devices count: 1 GiB reads "1.0 GiB", not "1024.0 MiB". */
function bytes(b: number): string {
  if (b >= MiB * MiB) return `${(b / (MiB * MiB)).toFixed(1)} TiB`;
  if (b >= 1024 * MiB) return `${(b / (1024 * MiB)).toFixed(1)} GiB`;
  return b >= MiB ? `${(b / MiB).toFixed(1)} MiB` : `${(b / 1024).toFixed(1)} KiB`;
}

/** The open point's blocks over what the planner tracks: not pre-sent, so its lag grows. */
function untracked(p: NodeStatus['volumes'][number]['planner']): string {
  return p && p.untrackedBytes > 0 ? ` (${bytes(p.untrackedBytes)} of it over the planner's tracked blocks: ships at the close)` : '';
}

/** Whether the planner started from its saved model (it learns for hours otherwise). */
function plannerModel(p: NodeStatus['volumes'][number]['planner']): string {
  if (!p) return '';
  return p.restoredFrom === null ? ', planner model new since start' : `, planner model resumed from ${new Date(p.restoredFrom * 1000).toISOString()}`;
}

/** A link cap: its rate now and what sets it ("10.00 MB/s (window mon-fri 08:00-18:00 until ...)"). */
export function formatCap(c: LinkCapView): string {
  const rate = c.rateLimit === null ? 'off' : `${(c.rateLimit / 1e6).toFixed(2)} MB/s`;
  if (c.setBy === 'operator') return `${rate} (set by an operator: it holds until \`headstart rate auto${c.peer === null ? '' : ` --peer ${c.peer}`}\`)`;
  const until = c.until === null ? '' : ` until ${new Date(c.until).toISOString()}`;
  if (c.setBy === 'window') return `${rate} (window ${c.window}${until})`;
  return c.windows > 0 && c.until !== null ? `${rate} (no window in force; the next boundary is at ${new Date(c.until).toISOString()})` : rate;
}

/** A replica's primary, as promote's guard sees it: what an operator asks before a failover. */
function primaryLink(p: VolumeView['primaryLink'], now: number): string {
  if (p == null) return 'primary unknown';
  if (p.connected !== null) return `primary connected (${p.connected})`;
  if (p.demotedAt !== null) return `primary demoted ${seconds(now - p.demotedAt)} ago`;
  return p.lastSeenAt === null ? 'primary not seen since this node started' : `primary not connected (last seen ${seconds(now - p.lastSeenAt)} ago)`;
}

/** A replica's committed point's age (RPO age), on its primary's clock: the point's scheduled time is that clock's. */
function replicaAge(v: VolumeView, now: number): number | null {
  return v.committed === null ? null : now - (v.primaryLink?.clockAheadMs ?? 0) - v.committed.scheduledAt;
}

/** A replica whose clock differs from its primary's: said, since its RPO age is then read on the primary's clock. */
function clockSkew(p: VolumeView['primaryLink']): string {
  const ahead = p?.clockAheadMs;
  if (ahead == null) return '';
  return `; CLOCKS DIFFER: this node's clock is ${seconds(Math.abs(ahead))} ${ahead > 0 ? 'ahead of' : 'behind'} ${p?.clockOf ?? 'the primary'}'s (RPO age on ${p?.clockOf ?? 'the primary'}'s clock; fix NTP)`;
}

/**
 * The sink not connected that the most points are kept for (from the point it reads next on),
 * if any: what fills a primary's disk while a site is away. A sink that catches up
 * (catchUpTo) reads only that point of the ones between.
 */
function keptFor(v: VolumeView): { name: string; state: string; acked: number; points: number } | null {
  if (v.role !== 'primary' || v.latestClosed === null) return null;
  const latest = v.latestClosed;
  // The first point whose content is kept for it: the one after its last, or its catch-up's.
  const first = (k: VolumeView['sinks'][number]) => k.catchUpTo ?? k.acked! + 1;
  const away = v.sinks.filter((k) => k.state !== 'connected' && k.acked !== null && k.acked < latest && k.catchUpTo !== latest).sort((a, b) => first(a) - first(b))[0];
  return away === undefined ? null : { name: away.name, state: away.state, acked: away.acked!, points: latest - first(away) + 1 };
}

export function formatStatus(s: NodeStatus): string {
  const lines = [`node ${s.node} at ${new Date(s.time).toISOString()}`];
  const caps = (s.linkCaps ?? []).filter((c) => c.rateLimit !== null || c.windows > 0 || c.setBy === 'operator');
  if (caps.length > 0) lines.push(`link caps: ${caps.map((c) => `${c.peer === null ? 'node-wide' : `peer ${c.peer}`} ${formatCap(c)}`).join('; ')}`);
  for (const v of s.volumes) {
    const leveled = v.levelOffsetMs == null ? '' : ` (leveled: ${(v.levelOffsetMs / 1000).toFixed(v.levelOffsetMs % 1000 === 0 ? 0 : 1)} s after the clock's marks)`;
    const next = v.nextCloseAt === null ? '-' : `in ${Math.max(0, Math.round((v.nextCloseAt - s.time) / 1000))} s${leveled}`;
    lines.push(
      `volume ${v.name}${v.group ? ` (group ${v.group})` : ''}: ${v.role}, epoch ${v.epoch}, ${bytes(v.size)}, ` +
        (v.role === 'primary'
          ? `open point ${v.openSnapshot}, last closed ${v.latestClosed ?? '-'}, next close ${next}, policy ${v.policy}, D ${bytes(v.planner?.D ?? v.dirtyBytes)}${untracked(v.planner)}${plannerModel(v.planner)}`
          : // A group's members number their points apart: the scheduled time says they hold the same one.
            `committed point ${v.committed?.n ?? '-'}${v.group && v.committed ? ` of ${new Date(v.committed.scheduledAt).toISOString()}` : ''} (RPO age ${v.committed ? seconds(replicaAge(v, s.time)!) : '-'}${v.committed && v.rpoTargetMs !== null && replicaAge(v, s.time)! > v.rpoTargetMs ? ', over target!' : ''}), ${primaryLink(v.primaryLink, s.time)}${clockSkew(v.primaryLink)}`),
    );
    const free = v.disk.freeBytes;
    if (free !== null && free < v.disk.warnBytes) {
      lines.push(free < v.disk.reserveBytes
        ? `  DISK FULL: ${bytes(free)} free; writes are refused below ${bytes(v.disk.reserveBytes)} (kept for the write log): free space`
        : `  DISK NEARLY FULL: ${bytes(free)} free; writes will be refused below ${bytes(v.disk.reserveBytes)}`);
      const away = keptFor(v);
      if (away !== null) lines.push(`  ${away.points} point(s) are kept for sink ${away.name} (link ${away.state}, last committed ${away.acked}): if it stays away, take it out of the volume's sinks and restart, so they go (it then takes a full copy by checksum)`);
    }
    const cf = v.closeFailing;
    if (cf) {
      lines.push(`  CLOSE FAILING: the point due at ${new Date(cf.scheduledAt).toISOString()} could not be closed (${cf.attempts} attempt(s) since ${seconds(s.time - cf.since)} ago): ${cf.code}: ${cf.message}; it stays open, retried every few seconds`);
    }
    // A commit that stopped half-way leaves the image between two points; a large one under
    // way (an initial copy) is only said once it takes a while: reads wait meanwhile.
    const bp = v.betweenPoints;
    if (bp?.stalled) {
      lines.push(`  BETWEEN POINTS: the commit of point ${bp.n} (begun ${seconds(s.time - bp.since)} ago) stopped half-way; reads of the export wait (and fail after a minute) until a retry finishes it: see the node log (a full disk most often)`);
    } else if (bp && s.time - bp.since >= BETWEEN_POINTS_SHOWN_MS) {
      lines.push(`  committing point ${bp.n}: writing the image for ${seconds(s.time - bp.since)}; reads of the export wait until it is done`);
    }
    const gw = v.groupWait;
    if (gw) {
      const what = gw.phase === 'closed' ? 'to receive it' : 'to make it durable';
      lines.push(`  GROUP WAIT: the point due at ${new Date(gw.scheduledAt).toISOString()} is staged; its commit has waited ${seconds(s.time - gw.since)} for ${gw.waitingFor.join(', ') || 'the group'} ${what} (group ${gw.group} commits as one)`);
    }
    const lv = v.lastVerify;
    if (lv) {
      const when = `${seconds(s.time - lv.at)} ago`;
      lines.push(lv.error !== null ? `  verification: could not run (${when}): ${lv.error}` : lv.equal ? `  verification: replica equal at point ${lv.point} (${when})` : `  verification: REPLICA DIFFERS at point ${lv.point} (${when}): ${bytes(lv.differingBytes ?? 0)} in ${lv.ranges.length}${lv.ranges.length === 16 ? '+' : ''} range(s), first at byte ${lv.ranges[0]?.[0]}`);
    }
    // An older serve's status has no such field (the CLI may be newer than the node).
    if ((v.verifyDeferred ?? 0) > 0) lines.push(`  verification: the last ${v.verifyDeferred} scheduled one(s) deferred: a sink has not committed the latest point yet (a backlog)`);
    for (const k of v.sinks) {
      const rpo = k.rpoAgeMs === null ? '-' : seconds(k.rpoAgeMs);
      const target = v.rpoTargetMs !== null && k.rpoAgeMs !== null && k.rpoAgeMs > v.rpoTargetMs ? ' (over target!)' : '';
      const link = k.name === 'archive' ? `archive store ${k.state === 'connected' ? 'ok' : k.state === 'error' ? 'failing (retrying)' : k.state}` : `link ${k.state}`;
      const converging = k.notConverging ? ', NOT CONVERGING (the points waiting grow with every close: writes outrun the link)' : '';
      // A group member's commit on the replica includes its wait for the rest of the group
      // (GROUP WAIT there): then a long one is another member's link, not this replica's disk.
      const commit = k.lastCommitMs === null || k.lastCommitMs === undefined ? '' : ` (its commit ${seconds(k.lastCommitMs)}${v.group ? `, with its wait for group ${v.group}` : ''})`;
      const catchUp = k.catchUpTo != null ? ` (catching up: next point ${k.catchUpTo}, straight from ${k.acked})` : '';
      lines.push(`  sink ${k.name}: ${link}, last committed ${k.acked ?? '-'}${catchUp}, lag ${seconds(k.lastLagMs)}${commit}, RPO age ${rpo}${target}, B ${(k.throughput / 1e6).toFixed(2)} MB/s${converging}${k.lastError ? `, last error: ${k.lastError}` : ''}`);
    }
  }
  return lines.join('\n');
}
