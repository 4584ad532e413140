/**
 * The selected volume x sink in detail: uPlot charts of completion lag per snapshot (with
 * the RPO target), link throughput B and bytes to send D over time, and a timeline of the
 * newest snapshots (pre-send window, scheduled time, close, commit). Only the selected row
 * is drawn, and only when its series changed.
 */
import uPlot from 'uplot';
import 'uplot/dist/uPlot.min.css';
import { formatClock, formatDuration } from '../format';
import type { Model } from './model';

const TIMELINE_POINTS = 12;
/** Tick steps of the time axes, seconds. */
const TIME_STEPS = [1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 21600, 43200, 86400];
const SVG_NS = 'http://www.w3.org/2000/svg';

function chart(el: HTMLElement, label: string, color: string, extra: uPlot.Series[] = []): uPlot {
  const width = Math.max(200, el.clientWidth || 300);
  const u = new uPlot(
    {
      width,
      height: 150,
      legend: { show: false },
      cursor: { drag: { x: false, y: false } },
      scales: { x: { time: true } },
      series: [{}, { label, stroke: color, width: 2, points: { show: true, size: 4 } }, ...extra],
      // Clock times in the viewer's zone, 24 h, like the rest of the page.
      // Whole seconds at least between ticks: labels are clock times to the second.
      axes: [{ values: (_u, splits) => splits.map((t) => formatClock(t * 1000)), incrs: TIME_STEPS, space: 70 }, { size: 52 }],
    },
    [[], [], ...extra.map(() => [])],
    el,
  );
  // Follow the panel's width (window resized, sidebar wrapped).
  new ResizeObserver(() => {
    const w = Math.max(200, el.clientWidth);
    if (w !== u.width) u.setSize({ width: w, height: 150 });
  }).observe(el);
  return u;
}

export class Detail {
  private readonly lag: uPlot;
  private readonly b: uPlot;
  private readonly d: uPlot;
  private key: string | null = null;

  constructor(
    private readonly title: HTMLElement,
    lagEl: HTMLElement,
    bEl: HTMLElement,
    dEl: HTMLElement,
    private readonly timeline: HTMLElement,
  ) {
    this.lag = chart(lagEl, 'lag (s)', '#2563eb', [{ label: 'RPO target (s)', stroke: '#c62828', dash: [4, 4], width: 1 }]);
    this.b = chart(bEl, 'B (MB/s)', '#1a7f37');
    this.d = chart(dEl, 'D (MiB)', '#b35900');
  }

  get selected(): string | null {
    return this.key;
  }

  select(key: string | null): void {
    this.key = key;
  }

  render(model: Model, now: number): void {
    const key = this.key;
    const row = key ? model.rows.get(key) : undefined;
    if (!key || !row) {
      this.title.textContent = 'Select a row';
      return;
    }
    this.title.textContent = `${row.volume.name} → ${row.sink?.name ?? '(no sink)'}`;
    const recs = model.sortedRecords(key);
    const done = recs.filter((r) => r.lagMs !== null);
    const target = row.sink?.rpoTargetMs ?? null;
    this.lag.setData([done.map((r) => r.scheduledAt / 1000), done.map((r) => r.lagMs! / 1000), done.map(() => (target === null ? null : target / 1000))]);
    const sm = model.samples.get(key);
    this.b.setData([sm?.t ?? [], sm?.b ?? []]);
    this.d.setData([sm?.t ?? [], sm?.d ?? []]);
    this.drawTimeline(recs.slice(-TIMELINE_POINTS), now, row.sink?.state === 'connected');
  }

  private drawTimeline(recs: ReturnType<Model['sortedRecords']>, now: number, linkUp: boolean): void {
    const svg = document.createElementNS(SVG_NS, 'svg');
    const rowH = 16;
    const W = 1000;
    const left = 150;
    svg.setAttribute('viewBox', `0 0 ${W} ${recs.length * rowH + 18}`);
    if (recs.length === 0) {
      this.timeline.replaceChildren(document.createTextNode('no snapshot records yet'));
      return;
    }
    let t0 = Infinity;
    let t1 = -Infinity;
    for (const r of recs) {
      t0 = Math.min(t0, r.presendStartAt ?? Infinity, r.scheduledAt, r.closedAt ?? Infinity);
      t1 = Math.max(t1, r.committedAt ?? now, r.scheduledAt);
    }
    const span = Math.max(1, t1 - t0);
    const x = (t: number) => left + ((t - t0) / span) * (W - left - 8);
    const el = (name: string, attrs: Record<string, string | number>, text?: string) => {
      const e = document.createElementNS(SVG_NS, name);
      for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, String(v));
      if (text !== undefined) e.textContent = text;
      svg.append(e);
      return e;
    };
    recs.forEach((r, i) => {
      const y = 2 + i * rowH;
      // Nothing is in flight over a link that is down or fenced: the point waits (the row says why).
      const lag = r.lagMs !== null ? formatDuration(r.lagMs) : linkUp ? 'in flight' : 'waiting';
      el('text', { x: 0, y: y + 11, 'font-size': 11, fill: '#374151' }, `#${r.n} ${formatClock(r.scheduledAt)} · ${lag}`);
      if (r.presendStartAt !== null) {
        const end = r.closedAt ?? now;
        el('rect', { x: x(r.presendStartAt), y: y + 2, width: Math.max(1, x(end) - x(r.presendStartAt)), height: rowH - 4, fill: '#bfdbfe' });
      }
      if (r.closedAt !== null) {
        const end = r.committedAt ?? now;
        el('rect', { x: x(r.closedAt), y: y + 4, width: Math.max(2, x(end) - x(r.closedAt)), height: rowH - 8, fill: r.committedAt !== null ? '#2563eb' : '#93c5fd' });
      }
      el('line', { x1: x(r.scheduledAt), x2: x(r.scheduledAt), y1: y, y2: y + rowH, stroke: '#111827', 'stroke-dasharray': '3 2' });
      if (r.committedAt !== null) el('circle', { cx: x(r.committedAt), cy: y + rowH / 2, r: 3, fill: '#1a7f37' });
    });
    // Time axis: the window's two ends, in the viewer's zone.
    const axisY = recs.length * rowH + 14;
    el('text', { x: left, y: axisY, 'font-size': 11, fill: '#6b7280' }, formatClock(t0));
    el('text', { x: W - 8, y: axisY, 'font-size': 11, fill: '#6b7280', 'text-anchor': 'end' }, formatClock(t1));
    this.timeline.replaceChildren(svg);
  }
}
