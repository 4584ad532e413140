/**
 * The dashboard page: connects to /feed (token from ?token= or the cookie the server set),
 * applies each message to the model, and renders on the next animation frame, plus once a
 * second so ages advance. Reconnects on its own; while the feed is down every row says so
 * instead of showing stale figures as healthy. `window.headstartDashboard` exposes render
 * timings and long tasks for tests and for anyone profiling the page.
 */
import { viewerTimeZone } from '../format';
import { Detail } from './detail';
import { EventList } from './events';
import { Model, parseFeed } from './model';
import { SinkTable } from './table';
import './style.css';

interface PerfHandle {
  /** Messages applied. */
  messages: number;
  /** ms to apply a message to the model, newest last (bounded). */
  applyMs: number[];
  /** ms of each render (table, detail, events), newest last (bounded). */
  renderMs: number[];
  /** Long tasks (> 50 ms) seen by the browser since load, ms each (bounded). */
  longTasks: number[];
  /** true once the first status is shown. */
  ready: boolean;
  feed: 'connecting' | 'live' | 'lost';
}

const $ = <T extends HTMLElement>(id: string) => document.getElementById(id) as T;
const perf: PerfHandle = { messages: 0, applyMs: [], renderMs: [], longTasks: [], ready: false, feed: 'connecting' };
(window as unknown as { headstartDashboard: PerfHandle }).headstartDashboard = perf;
const keep = (a: number[], v: number) => {
  a.push(v);
  if (a.length > 500) a.shift();
};
try {
  new PerformanceObserver((list) => {
    for (const e of list.getEntries()) keep(perf.longTasks, e.duration);
  }).observe({ type: 'longtask', buffered: true });
} catch {
  // longtask timing is Chromium-only; elsewhere the page simply does not report it
}

const model = new Model();
const table = new SinkTable($('sink-rows'), (key) => select(key));
const detail = new Detail($('detail-title'), $('chart-lag'), $('chart-b'), $('chart-d'), $('timeline'));
const events = new EventList($<HTMLOListElement>('event-list'));
$('tz').textContent = `times in ${viewerTimeZone()}`;

function select(key: string | null): void {
  detail.select(key);
  table.select(key);
  render(true);
}

let scheduled = false;
let lastCounts = '';
let eventsPaintedAt = -Infinity;
let detailPaintedAt = -Infinity;
function schedule(): void {
  if (scheduled) return;
  scheduled = true;
  requestAnimationFrame(() => {
    scheduled = false;
    render(false);
  });
}

function render(full: boolean): void {
  const t0 = performance.now();
  paint(full);
  keep(perf.renderMs, performance.now() - t0);
}

function paint(full: boolean): void {
  const now = model.serverNow();
  if (model.layoutChanged) {
    table.layout(model);
    model.layoutChanged = false;
    if (detail.selected === null || !model.rows.has(detail.selected)) {
      const first = model.rows.keys().next();
      detail.select(first.done ? null : first.value);
    }
    table.select(detail.selected);
    full = true;
  }
  const live = perf.feed === 'live';
  const c = table.render(model, now, live);
  const countsKey = `${c.healthy}|${c.behind}|${c.broken}`;
  if (countsKey !== lastCounts) {
    lastCounts = countsKey;
    paintSummary(c);
  }
  const node = model.node ? `node ${model.node}` : '';
  if ($('node').textContent !== node) $('node').textContent = node;
  const sel = detail.selected;
  // Charts of the selected row: at once on a new selection, else once a second at most.
  if (full || (sel !== null && model.seriesChanged.has(sel) && performance.now() - detailPaintedAt >= 1000)) {
    detailPaintedAt = performance.now();
    detail.render(model, now);
    model.seriesChanged.clear();
  }
  // The event list is for reading, not for alarms (the table is): once a second is enough.
  if (full || performance.now() - eventsPaintedAt >= 1000) {
    eventsPaintedAt = performance.now();
    events.render(model);
  }
}


function paintSummary(c: { healthy: number; behind: number; broken: number }): void {
  const sum = $('summary');
  sum.replaceChildren(
    ...([['healthy', c.healthy], ['behind', c.behind], ['broken', c.broken]] as const).map(([k, n]) => {
      const s = document.createElement('span');
      s.className = `n badge ${n > 0 ? k : 'unknown'}`;
      s.dataset.health = k;
      s.textContent = `${n} ${k}`;
      return s;
    }),
  );
  document.title = `${c.broken > 0 ? `(${c.broken} broken) ` : ''}headstart · replica health`;
}

function setFeed(state: PerfHandle['feed'], text: string): void {
  perf.feed = state;
  const el = $('feed-state');
  el.className = `feed ${state}`;
  el.textContent = text;
}

const token = new URLSearchParams(location.search).get('token');
if (token !== null) {
  // The server set a cookie with the token: take it out of the address bar (and of screenshots).
  history.replaceState(null, '', location.pathname + location.hash);
}

let backoff = 500;
function connect(): void {
  const url = `${location.protocol === 'https:' ? 'wss' : 'ws'}://${location.host}/feed${token !== null ? `?token=${encodeURIComponent(token)}` : ''}`;
  const ws = new WebSocket(url);
  ws.onopen = () => {
    backoff = 500;
  };
  ws.onmessage = (ev) => {
    const t0 = performance.now();
    try {
      const m = parseFeed(String(ev.data));
      model.apply(m);
      if (m.type === 'hello') {
        events.reset();
        setFeed('live', 'live');
        perf.ready = true;
      }
    } catch (err) {
      setFeed('lost', `bad feed message: ${(err as Error).message}`);
      ws.close();
      return;
    }
    perf.messages++;
    keep(perf.applyMs, performance.now() - t0);
    // Rendering waits for the next frame: several messages in one frame cost one render.
    schedule();
  };
  ws.onclose = () => {
    if (perf.feed !== 'lost') setFeed('lost', 'feed lost · reconnecting');
    render(false);
    setTimeout(connect, backoff);
    backoff = Math.min(backoff * 2, 5000);
  };
}

setInterval(() => schedule(), 1000);
connect();
