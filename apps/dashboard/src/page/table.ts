/**
 * The at-a-glance table: one row per volume x sink, health in colour AND words. Rows are
 * built once and only cells whose text changed are touched, so 150 rows updating every
 * second cost little; ages (RPO age, a growing lag, TS) advance by the page's clock
 * between updates.
 */
import type { FeedSink, FeedVolume } from '@headstart/protocol';
import { formatBytes, formatClock, formatDuration, formatRate } from '../format';
import { sinkHealth, type Health, type HealthVerdict } from '../health';
import type { Model, Row } from './model';

const COLUMNS = ['health', 'volume', 'sink', 'role', 'link', 'committed', 'lag', 'rpo', 'dirty', 'throughput', 'ts', 'presend', 'presented', 'collided', 'staging', 'policy'] as const;
type Col = (typeof COLUMNS)[number];

interface RowView {
  tr: HTMLTableRowElement;
  cells: Record<Col, HTMLTableCellElement>;
  text: Partial<Record<Col, string>>;
  cls: Partial<Record<Col, string>>;
  health: string;
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
  if (!s) return null;
  const since = Math.max(0, now - row.statusTime);
  return sinkHealth({ state: s.state, rpoAgeMs: s.rpoAgeMs === null ? null : s.rpoAgeMs + since, rpoTargetMs: s.rpoTargetMs }, model.lags(row.key));
}

function lagIsGrowing(v: FeedVolume, s: FeedSink): boolean {
  const closed = v.latestClosedPoint?.n ?? null;
  return closed !== null && (s.committedPoint?.n ?? -1) < closed;
}

export class SinkTable {
  private readonly views = new Map<string, RowView>();

  constructor(private readonly tbody: HTMLTableSectionElement, private readonly onSelect: (key: string) => void) {}

  private create(row: Row): RowView {
    const tr = document.createElement('tr');
    const cells = {} as Record<Col, HTMLTableCellElement>;
    for (const c of COLUMNS) {
      const td = document.createElement('td');
      td.dataset.col = c;
      tr.append(td);
      cells[c] = td;
    }
    tr.dataset.volume = row.volume.name;
    tr.dataset.sink = row.sink?.name ?? '';
    tr.addEventListener('click', () => this.onSelect(row.key));
    return { tr, cells, text: {}, cls: {}, health: '' };
  }

  /** Re-sorts rows (volume name, then sink) after rows came or went. */
  layout(model: Model): void {
    for (const [key, v] of this.views) {
      if (!model.rows.has(key)) {
        v.tr.remove();
        this.views.delete(key);
      }
    }
    const rows = [...model.rows.values()].sort((a, b) => a.volume.name.localeCompare(b.volume.name) || (a.sink?.name ?? '').localeCompare(b.sink?.name ?? ''));
    const frag = document.createDocumentFragment();
    for (const r of rows) {
      let v = this.views.get(r.key);
      if (!v) {
        v = this.create(r);
        this.views.set(r.key, v);
      }
      frag.append(v.tr);
    }
    this.tbody.append(frag);
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
    for (const row of model.rows.values()) {
      const v = this.views.get(row.key);
      if (!v) continue;
      const verdict = rowVerdict(model, row, now, feedLive);
      const h: Health | 'unknown' = verdict?.health ?? 'unknown';
      if (h === 'unknown') counts.other++;
      else counts[h]++;
      this.paintHealth(v, h, verdict?.reason ?? (feedLive ? (row.volume.role === 'replica' ? 'replica volume' : 'no sink') : 'feed lost'));
      v.tr.classList.toggle('stale', !feedLive);
      this.paintRow(v, row, now);
      row.dirty = false;
    }
    return counts;
  }

  private paintHealth(v: RowView, h: string, reason: string): void {
    const key = `${h}|${reason}`;
    if (v.health === key) return;
    v.health = key;
    v.tr.dataset.health = h;
    const badge = document.createElement('span');
    badge.className = `badge ${h}`;
    badge.textContent = h === 'unknown' ? 'n/a' : h;
    const why = document.createElement('span');
    why.className = 'why';
    why.textContent = reason;
    v.cells.health.replaceChildren(badge, why);
  }

  private paintRow(v: RowView, row: Row, now: number): void {
    const vol = row.volume;
    const s = row.sink;
    const since = Math.max(0, now - row.statusTime);
    this.set(v, 'volume', vol.name);
    this.set(v, 'sink', s?.name ?? '—');
    this.set(v, 'role', `${vol.role} · e${vol.epoch}`);
    const cp = s ? s.committedPoint : vol.committedPoint;
    // Scheduled time, then the commit time (clock seconds only when it is the same minute, to stay narrow).
    const commit = cp?.committedAt ?? null;
    const commitText = commit === null ? '' : Math.floor(commit / 60_000) === Math.floor(cp!.scheduledAt / 60_000) ? ` → :${formatClock(commit).slice(-2)}` : ` → ${formatClock(commit)}`;
    this.set(v, 'committed', cp ? `#${cp.n} · ${formatClock(cp.scheduledAt)}${commitText}` : '—');
    v.cells.committed.title = cp ? `point #${cp.n}: scheduled ${new Date(cp.scheduledAt).toLocaleString()}${commit !== null ? `, committed ${new Date(commit).toLocaleString()}` : ''}` : '';
    if (!s) {
      for (const c of ['link', 'lag', 'rpo', 'dirty', 'throughput', 'ts', 'presend', 'presented', 'collided', 'staging', 'policy'] as const) this.set(v, c, '—');
      return;
    }
    this.set(v, 'link', s.state + (s.lastError && s.state !== 'connected' ? ` (${s.lastError.split(':')[0]})` : ''), `link-${s.state}`);
    const lag = s.lagMs === null ? null : s.lagMs + (lagIsGrowing(vol, s) ? since : 0);
    this.set(v, 'lag', formatDuration(lag));
    const age = s.rpoAgeMs === null ? null : s.rpoAgeMs + since;
    const over = age !== null && s.rpoTargetMs !== null && age > s.rpoTargetMs;
    this.set(v, 'rpo', `${formatDuration(age)} / ${formatDuration(s.rpoTargetMs)}`, over ? 'over' : '');
    this.set(v, 'dirty', formatBytes(s.dirtyBytes));
    this.set(v, 'throughput', formatRate(s.throughput));
    const ts = vol.nextCloseAt !== null ? vol.nextCloseAt - now : s.secondsToClose === null ? null : s.secondsToClose * 1000 - since;
    this.set(v, 'ts', ts === null ? '—' : formatDuration(Math.max(0, ts)));
    this.set(v, 'presend', formatClock(s.presendStartAt));
    this.set(v, 'presented', formatBytes(s.presentBytes));
    this.set(v, 'collided', formatBytes(s.collidedBytes));
    const st = s.staging;
    this.set(v, 'staging', st ? `#${st.n} ${st.stagedBlocks}${st.totalBlocks !== null ? ` / ${st.totalBlocks} blocks${st.totalBlocks > 0 ? ` (${Math.floor((100 * Math.min(st.stagedBlocks, st.totalBlocks)) / st.totalBlocks)} %)` : ''}` : ' blocks'}` : '—');
    this.set(v, 'policy', s.policy);
  }
}
