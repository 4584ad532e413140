/**
 * Snapshot schedules: when the next point of a volume is due. An interval is aligned to the
 * wall clock (every 5 m closes at :00, :05, ...), so points of different volumes and sites
 * line up and an operator can predict them; a cron expression gives calendar windows.
 * An interval can change by the time of day and week (windows: "every 5 m on weekdays
 * 08:00-18:00, every hour otherwise, none during the nightly batch"), with the same
 * windows as link caps (rate-windows.ts): the first that holds sets the interval.
 */
import { CronExpressionParser } from 'cron-parser';
import { windowAt, type ClockWindow } from './rate-windows';

/** A window of a schedule: its interval inside it (ms), or null: no points inside it. */
export interface ScheduleWindow extends ClockWindow {
  readonly every: number | null;
}

export interface Schedule {
  /** The first scheduled time strictly after `now` (epoch ms). */
  nextAfter(now: number): number;
  readonly description: string;
}

const markAfter = (t: number, everyMs: number, originMs: number) => originMs + (Math.floor((t - originMs) / everyMs) + 1) * everyMs;

/**
 * Points at origin + k * every (origin defaults to the epoch, i.e. aligned to the clock).
 * With windows, the interval in force at a moment is the first window's that holds it
 * (none: no points), else `everyMs`; a point falls on a mark of the interval in force, so a
 * window of 5 m starting at 08:00 has points at 08:00, 08:05, ... and the hourly marks
 * resume when it ends. nextAfter is Infinity if no point will ever fall (every window none,
 * all week).
 */
export function intervalSchedule(everyMs: number, originMs = 0, windows: readonly ScheduleWindow[] = []): Schedule {
  const seconds = (ms: number) => `${ms / 1000}s`;
  const description = `every ${seconds(everyMs)}${windows.map((w) => `, ${w.every === null ? 'none' : `every ${seconds(w.every)}`} in ${w.label}`).join('')}`;
  if (windows.length === 0) return { description, nextAfter: (now) => markAfter(now, everyMs, originMs) };
  return {
    description,
    nextAfter(now) {
      // Walk the regimes from now: the first mark of the interval in force before the regime
      // ends (a mark on the boundary itself counts), else on to the next regime.
      let after = now;
      let probe = now;
      for (let i = 0; i < 4096; i++) {
        const { window, until } = windowAt(windows, probe);
        const every = window === null ? everyMs : window.every;
        if (every !== null) {
          const next = markAfter(after, every, originMs);
          if (next <= until) return next;
        }
        if (until === Infinity) return Infinity;
        after = until - 1;
        probe = until;
      }
      return Infinity;
    },
  };
}

export function cronSchedule(expression: string): Schedule {
  return {
    description: `cron "${expression}"`,
    nextAfter: (now) => CronExpressionParser.parse(expression, { currentDate: new Date(now) }).next().getTime(),
  };
}

export function scheduleFrom(spec: { every?: number; cron?: string; origin?: number; windows?: readonly ScheduleWindow[] }): Schedule {
  if (spec.every !== undefined) return intervalSchedule(spec.every, spec.origin, spec.windows);
  if (spec.cron !== undefined) return cronSchedule(spec.cron);
  throw new Error('schedule needs every or cron');
}
