/**
 * Link caps that follow the clock (DESIGN "What operators of DR replication need", 9: caps
 * and windows). A cap — a peer's `rateLimit`, or the node-wide `linkCap` — can have windows:
 * "on weekdays from 08:00 to 18:00, 10 MB/s; outside them, the plain cap". The first window
 * (in the order written) that holds the moment sets the cap; outside every window the plain
 * cap holds (or none). Times are the node's local time, seconds optional; a window whose end
 * is before its start runs past midnight and belongs to the day it starts on; equal start
 * and end mean the whole day.
 *
 * Pure: `capAt` takes the time and returns the cap and when it may change next, so the
 * node re-arms a timer for that moment and tests need no clock.
 */

/** A stretch of the week by the clock: link caps' windows, and schedules' (schedule.ts). */
export interface ClockWindow {
  /** Days the window starts on, 0 = Sunday ... 6 = Saturday; null = every day. */
  readonly days: ReadonlySet<number> | null;
  /** Seconds after local midnight. */
  readonly from: number;
  readonly to: number;
  /** As written, for status and logs: "mon-fri 08:00-18:00". */
  readonly label: string;
}

export interface RateWindow extends ClockWindow {
  /** Bytes/s inside the window; null = no cap. */
  readonly rate: number | null;
}

export interface CapNow {
  readonly rate: number | null;
  /** The window that sets it, or null: the plain cap. */
  readonly window: RateWindow | null;
  /** When a window next starts or ends (epoch ms): the cap may change then. */
  readonly until: number;
}

const DAY_NAMES = ['sun', 'mon', 'tue', 'wed', 'thu', 'fri', 'sat'];

const FULL_DAY_NAMES = ['sunday', 'monday', 'tuesday', 'wednesday', 'thursday', 'friday', 'saturday'];

function dayIndex(token: string | undefined): number {
  const t = (token ?? '').trim();
  const i = DAY_NAMES.indexOf(t);
  return i >= 0 ? i : FULL_DAY_NAMES.indexOf(t);
}

/** "mon-fri", "sat,sun", "monday,wed-fri", "daily"; a range may wrap ("fri-mon"). */
export function parseDays(spec: string): ReadonlySet<number> | null {
  const s = spec.trim().toLowerCase();
  if (s === 'daily') return null;
  const days = new Set<number>();
  for (const part of s.split(',')) {
    const ends = part.split('-');
    const from = dayIndex(ends[0]);
    const to = ends.length === 1 ? from : dayIndex(ends[1]);
    if (ends.length > 2 || from < 0 || to < 0) throw new Error(`not a list of days: ${JSON.stringify(spec)} (write e.g. mon-fri, sat,sun or daily)`);
    for (let d = from; ; d = (d + 1) % 7) {
      days.add(d);
      if (d === to) break;
    }
  }
  return days;
}

/** "HH:MM" or "HH:MM:SS", 00:00 to 24:00; seconds after midnight. */
export function parseTimeOfDay(spec: string): number {
  const m = /^(\d{1,2}):(\d{2})(?::(\d{2}))?$/.exec(spec.trim());
  const h = m ? Number(m[1]) : NaN;
  const min = m ? Number(m[2]) : NaN;
  const sec = m?.[3] !== undefined ? Number(m[3]) : 0;
  const t = h * 3600 + min * 60 + sec;
  if (!m || min > 59 || sec > 59 || t > 24 * 3600) throw new Error(`not a time of day: ${JSON.stringify(spec)} (write e.g. 08:00 or 22:30:00)`);
  return t;
}

/** Local midnight of the day `dayOffset` days after the day of `t`. */
function midnight(t: number, dayOffset: number): Date {
  const d = new Date(t);
  return new Date(d.getFullYear(), d.getMonth(), d.getDate() + dayOffset, 0, 0, 0, 0);
}

/** Epoch ms of `seconds` after the local midnight `day` (through Date, so DST shifts apply). */
function at(day: Date, seconds: number): number {
  const h = Math.floor(seconds / 3600);
  const m = Math.floor((seconds % 3600) / 60);
  return new Date(day.getFullYear(), day.getMonth(), day.getDate(), h, m, seconds % 60, 0).getTime();
}

/** [start, end) of the occurrence of `w` that starts on local day `day` (epoch ms). */
function occurrence(w: ClockWindow, day: Date): [number, number] {
  const start = at(day, w.from);
  const end = w.to > w.from ? at(day, w.to) : at(new Date(day.getFullYear(), day.getMonth(), day.getDate() + 1), w.to);
  return [start, end];
}

export function capAt(windows: readonly RateWindow[], plain: number | null, now: number): CapNow {
  const { window, until } = windowAt(windows, now);
  return { rate: window === null ? plain : window.rate, window, until };
}

/** The first window (in the order given) that holds `now`, or null; and when any window next starts or ends. */
export function windowAt<W extends ClockWindow>(windows: readonly W[], now: number): { window: W | null; until: number } {
  let active: W | null = null;
  let until = Infinity;
  // An occurrence that holds `now` started today or yesterday; the next boundary of any
  // window is within the coming week.
  for (const w of windows) {
    for (let offset = -1; offset <= 7; offset++) {
      const day = midnight(now, offset);
      if (w.days !== null && !w.days.has(day.getDay())) continue;
      const [start, end] = occurrence(w, day);
      if (active === null && start <= now && now < end) active = w;
      if (start > now && start < until) until = start;
      if (end > now && end < until) until = end;
    }
  }
  return { window: active, until };
}
