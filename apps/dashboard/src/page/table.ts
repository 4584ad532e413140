/**
 * The at-a-glance table: one row per volume x sink, health in colour AND words. Rows are
 * built once and only cells whose text changed are touched. Health is re-judged on every
 * render (a broken link shows at once); a row's figures are repainted at most once per
 * FIGURES_EVERY_MS, which is what keeps 150 rows updating four times a second cheap for
 * the browser's layout. Ages (RPO age, a growing lag, TS) advance by the page's clock.
 */
import type { FeedSink, FeedVolume } from '@headstart/protocol';
import { formatBytes, formatClock, formatDateTime, formatDuration, formatRate, formatTarget } from '../format';
import { replicaHealth, sinkHealth, type Health, type HealthVerdict } from '../health';
import type { Model, Row } from './model';

/** Figures of a row are repainted at most this often (health is judged on every render). */
const FIGURES_EVERY_MS = 1000;

const COLUMNS = ['health', 'volume', 'sink', 'role', 'link', 'committed', 'lag', 'rpo', 'dirty', 'throughput', 'ts', 'presend', 'presented', 'collided', 'staging', 'policy'] as const;
type Col = (typeof COLUMNS)[number];

/** Sort order of verdicts: what needs the operator comes first. */
const RANK: Record<string, number> = { broken: 0, behind: 1, healthy: 2, unknown: 3 };

interface RowView {
  tr: HTMLDivElement;
  cells: Record<Col, HTMLSpanElement>;
  paintedAt: number;
  text: Partial<Record<Col, string>>;
  cls: Partial<Record<Col, string>>;
  health: string;
  committedKey: string | null;
}

export interface Counts {
  healthy: number;
  behind: number;
  broken: number;
  other: number;
}

/** A row's figures as of `now` (server clock), aged since the status that carried them. */
export function rowVerdict(model: Model, row: Row, now: number, feedLive: boolean): HealthVerdict | null {
  if (!feedLive) return null;
  const s = row.sink;
  const since = Math.max(0, now - row.statusTime);
  if (!s) return row.volume.role === 'replica' ? replicaHealth(row.volume, now, since) : null;
  return sinkHealth({ state: s.state, rpoAgeMs: s.rpoAgeMs === null ? null : s.rpoAgeMs + since, rpoTargetMs: s.rpoTargetMs, notConverging: s.notConverging, volume: row.volume }, model.lags(row.key));
}

function lagIsGrowing(v: FeedVolume, s: FeedSink): boolean {
  const closed = v.latestClosedPoint?.n ?? null;
  return closed !== null && (s.committedPoint?.n ?? -1) < closed;
}

/** A replica's primary as the node sees it, in the words of `headstart status` (the cell is short, its tooltip says it all). */
export function primaryLink(p: FeedVolume['primaryLink'], now: number): { text: string; cls: string; title: string } {
  if (p == null) return { text: '—', cls: '', title: '' };
  if (p.connected !== null) return { text: 'primary connected', cls: 'link-connected', title: `primary connected (${p.connected})` };
  if (p.demotedAt !== null) return { text: `demoted ${formatDuration(Math.max(0, now - p.demotedAt))} ago`, cls: '', title: `primary demoted ${formatDuration(Math.max(0, now - p.demotedAt))} ago` };
  if (p.lastSeenAt === null) return { text: 'primary not seen', cls: 'link-disconnected', title: 'primary not seen since this node started' };
  const ago = formatDuration(Math.max(0, now - p.lastSeenAt));
  return { text: `lost ${ago} ago`, cls: 'link-disconnected', title: `primary not connected (last seen ${ago} ago)` };
}

export class SinkTable {
  private readonly views = new Map<string, RowView>();

  constructor(private readonly body: HTMLElement, private readonly onSelect: (key: string) => void) {}

  private create(row: Row): RowView {
    const tr = document.createElement('div');
    tr.className = 'row';
    tr.setAttribute('role', 'row');
    const cells = {} as Record<Col, HTMLSpanElement>;
    for (const c of COLUMNS) {
      const td = document.createElement('span');
      td.setAttribute('role', 'cell');
      td.dataset.col = c;
      tr.append(td);
      cells[c] = td;
    }
    tr.dataset.volume = row.volume.name;
    tr.dataset.sink = row.sink?.name ?? '';
    tr.addEventListener('click', () => this.onSelect(row.key));
    return { tr, cells, paintedAt: -Infinity, text: {}, cls: {}, health: '', committedKey: null };
  }

  /** Re-sorts rows, problems first (broken, behind, then the rest), then by volume and sink name; after rows came or went or a verdict changed. */
  layout(model: Model): void {
    for (const [key, v] of this.views) {
      if (!model.rows.has(key)) {
        v.tr.remove();
        this.views.delete(key);
      }
    }
    const rank = (key: string) => RANK[this.views.get(key)?.tr.dataset.health ?? 'unknown'] ?? 3;
    const rows = [...model.rows.values()].sort((a, b) => rank(a.key) - rank(b.key) || a.volume.name.localeCompare(b.volume.name) || (a.sink?.name ?? '').localeCompare(b.sink?.name ?? ''));
    const frag = document.createDocumentFragment();
    for (const r of rows) {
      let v = this.views.get(r.key);
      if (!v) {
        v = this.create(r);
        this.views.set(r.key, v);
      }
      frag.append(v.tr);
    }
    this.body.append(frag);
  }

  select(key: string | null): void {
    for (const [k, v] of this.views) v.tr.classList.toggle('selected', k === key);
  }

  private set(v: RowView, c: Col, text: string, cls = ''): void {
    if (v.text[c] !== text) {
      v.cells[c].textContent = text;
      v.text[c] = text;
    }
    if (v.cls[c] !== cls) {
      v.cells[c].className = cls;
      v.cls[c] = cls;
    }
  }

  /** Refreshes every row (ages move every second); cheap when nothing changed. */
  render(model: Model, now: number, feedLive: boolean): Counts {
    const counts: Counts = { healthy: 0, behind: 0, broken: 0, other: 0 };
    let reorder = false;
    for (const row of model.rows.values()) {
      const v = this.views.get(row.key);
      if (!v) continue;
      const verdict = rowVerdict(model, row, now, feedLive);
      const h: Health | 'unknown' = verdict?.health ?? 'unknown';
      if (h === 'unknown') counts.other++;
      else counts[h]++;
      const healthChanged = this.paintHealth(v, h, verdict?.reason ?? (feedLive ? (row.volume.role === 'replica' ? 'replica volume' : 'no sink') : 'feed lost'));
      const staleChanged = v.tr.classList.contains('stale') === feedLive;
      if (staleChanged) v.tr.classList.toggle('stale', !feedLive);
      if (healthChanged) reorder = true;
      // A verdict that changed repaints the figures with it, so the badge and the link cell never disagree.
      if (healthChanged || staleChanged || performance.now() - v.paintedAt >= FIGURES_EVERY_MS) {
        v.paintedAt = performance.now();
        this.paintRow(v, row, now);
        row.dirty = false;
      }
    }
    if (reorder) this.layout(model);
    return counts;
  }

  /** Returns whether the verdict changed. */
  private paintHealth(v: RowView, h: string, reason: string): boolean {
    const key = `${h}|${reason}`;
    if (v.health === key) return false;
    v.health = key;
    v.tr.dataset.health = h;
    const badge = document.createElement('span');
    badge.className = `badge ${h}`;
    badge.textContent = h === 'unknown' ? 'n/a' : h;
    const why = document.createElement('span');
    why.className = 'why';
    why.textContent = reason;
    v.cells.health.replaceChildren(badge, why);
    return true;
  }

  private paintRow(v: RowView, row: Row, now: number): void {
    const vol = row.volume;
    const s = row.sink;
    const since = Math.max(0, now - row.statusTime);
    this.set(v, 'volume', vol.group ? `${vol.name} · group ${vol.group}` : vol.name);
    this.set(v, 'sink', s?.name ?? '—');
    this.set(v, 'role', `${vol.role} · e${vol.epoch}`);
    const cp = s ? s.committedPoint : vol.committedPoint;
    // Scheduled time, then the commit time (clock seconds only when it is the same minute, to stay narrow).
    const commit = cp?.committedAt ?? null;
    const commitText = commit === null || !cp ? '' : Math.floor(commit / 60_000) === Math.floor(cp!.scheduledAt / 60_000) ? ` → :${formatClock(commit).slice(-2)}` : ` → ${formatClock(commit)}`;
    const committedKey = cp ? `${cp.n}|${cp.scheduledAt}|${commit}` : '';
    if (v.committedKey !== committedKey) {
      v.committedKey = committedKey;
      this.set(v, 'committed', cp ? `#${cp.n} · ${formatClock(cp.scheduledAt)}${commitText}` : '—');
      v.cells.committed.title = cp ? `point #${cp.n}: scheduled ${formatDateTime(cp.scheduledAt)}${commit !== null ? `, committed ${formatDateTime(commit)}` : ''}` : '';
    }
    if (!s) {
      for (const c of ['lag', 'dirty', 'throughput', 'ts', 'presend', 'presented', 'collided', 'staging', 'policy'] as const) this.set(v, c, '—');
      // A replica: its link to its primary (what an operator checks before promoting), and the age of the point it holds.
      const link = primaryLink(vol.primaryLink, now);
      // Clocks that differ: the age is read on the primary's clock (its points' times are), and said.
      const ahead = vol.primaryLink?.clockAheadMs ?? null;
      const of = vol.primaryLink?.clockOf ?? 'the primary';
      const skew = ahead === null ? '' : `clocks differ: this node's is ${formatDuration(Math.abs(ahead))} ${ahead > 0 ? 'ahead of' : 'behind'} ${of}'s (RPO age on ${of}'s clock)`;
      this.set(v, 'link', ahead === null ? link.text : `${link.text} · clocks differ`, link.cls);
      v.cells.link.title = skew === '' ? link.title : `${link.title}; ${skew}`;
      // With a target, as a sink's cell shows it (a replica's volume can carry one: rpoTarget).
      const age = vol.role === 'replica' && cp ? Math.max(0, now - (ahead ?? 0) - cp.scheduledAt) : null;
      const target = vol.rpoTargetMs ?? null;
      this.set(v, 'rpo', age === null ? '—' : target === null ? formatDuration(age) : `${formatDuration(age)} / ${formatTarget(target)}`, age !== null && target !== null && age > target ? 'over' : '');
      return;
    }
    // A sink that was away catches up: its next point skips those between (docs/operations.md).
    const catchUp = s.catchUpTo == null ? null : `catching up: its next point is #${s.catchUpTo}, straight from #${s.acked} (the points between are skipped)`;
    this.set(v, 'link', catchUp === null ? s.state : `${s.state} · catching up`, `link-${s.state}`);
    v.cells.link.title = [catchUp, s.lastError].filter((x) => x !== null && x !== '').join('; ');
    // A fenced link ships nothing (the two sites disagree on which is primary): no lag grows, none will end.
    const lag = s.lagMs === null || s.state === 'fenced' ? null : s.lagMs + (lagIsGrowing(vol, s) ? since : 0);
    this.set(v, 'lag', formatDuration(lag));
    const age = s.rpoAgeMs === null ? null : s.rpoAgeMs + since;
    const over = age !== null && s.rpoTargetMs !== null && age > s.rpoTargetMs;
    this.set(v, 'rpo', `${formatDuration(age)} / ${formatTarget(s.rpoTargetMs)}`, over ? 'over' : '');
    this.set(v, 'dirty', formatBytes(s.dirtyBytes));
    // B, and the cap that binds the link when one does (a window can explain a slow link).
    this.set(v, 'throughput', s.rateLimit === null ? formatRate(s.throughput) : `${formatRate(s.throughput)} / cap ${formatRate(s.rateLimit)}`);
    v.cells.throughput.title = s.rateLimit === null ? '' : `link cap ${formatRate(s.rateLimit)}${s.capReason ? `: ${s.capReason}` : ''}`;
    const ts = vol.nextCloseAt !== null ? vol.nextCloseAt - now : s.secondsToClose === null ? null : s.secondsToClose * 1000 - since;
    this.set(v, 'ts', ts === null ? '—' : formatDuration(Math.max(0, ts)));
    // A leveled schedule closes this volume at an offset from the clock's marks: say so where
    // an operator wonders why it closes at :03:45 rather than on the quarter hour.
    const offset = vol.levelOffsetMs ?? null;
    v.cells.ts.title = offset === null ? '' : `leveled: closes ${formatDuration(offset)} after the clock's marks (schedule.level)`;
    this.set(v, 'presend', formatClock(s.presendStartAt));
    this.set(v, 'presented', formatBytes(s.presentBytes));
    this.set(v, 'collided', formatBytes(s.collidedBytes));
    const st = s.staging;
    this.set(v, 'staging', st ? `#${st.n} ${st.stagedBlocks}${st.totalBlocks !== null ? `/${st.totalBlocks}${st.totalBlocks > 0 ? ` (${Math.floor((100 * Math.min(st.stagedBlocks, st.totalBlocks)) / st.totalBlocks)}%)` : ''}` : ''}` : '—');
    v.cells.staging.title = st ? `point #${st.n}: ${st.stagedBlocks} blocks staged on the replica${st.totalBlocks !== null ? ` of ${st.totalBlocks}` : ''}` : '';
    this.set(v, 'policy', s.policy);
    // Whether the planner still knows the workload after a restart (it learns for hours).
    const resumed = s.plannerResumedFrom;
    v.cells.policy.title = resumed === undefined ? '' : resumed === null ? 'planner model learning since the node started' : `planner model resumed from its state of ${formatDateTime(resumed)}`;
  }
}
