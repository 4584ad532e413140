/**
 * Snapshot schedules: when the next point of a volume is due. An interval is aligned to the
 * wall clock (every 5 m closes at :00, :05, ...), so points of different volumes and sites
 * line up and an operator can predict them; a cron expression gives calendar windows.
 */
import { CronExpressionParser } from 'cron-parser';

export interface Schedule {
  /** The first scheduled time strictly after `now` (epoch ms). */
  nextAfter(now: number): number;
  readonly description: string;
}

/** Points at origin + k * every (origin defaults to the epoch, i.e. aligned to the clock). */
export function intervalSchedule(everyMs: number, originMs = 0): Schedule {
  return {
    description: `every ${everyMs / 1000}s`,
    nextAfter: (now) => originMs + (Math.floor((now - originMs) / everyMs) + 1) * everyMs,
  };
}

export function cronSchedule(expression: string): Schedule {
  return {
    description: `cron "${expression}"`,
    nextAfter: (now) => CronExpressionParser.parse(expression, { currentDate: new Date(now) }).next().getTime(),
  };
}

export function scheduleFrom(spec: { every?: number; cron?: string; origin?: number }): Schedule {
  if (spec.every !== undefined) return intervalSchedule(spec.every, spec.origin);
  if (spec.cron !== undefined) return cronSchedule(spec.cron);
  throw new Error('schedule needs every or cron');
}
