import { describe, expect, it } from 'vitest';
import { validateConfig } from './config';
import { intervalSchedule, scheduleFrom, type ScheduleWindow } from './schedule';
import { parseDays, parseTimeOfDay } from './rate-windows';

const MIN = 60_000;
function win(days: string, from: string, to: string, every: number | null): ScheduleWindow {
  return { days: parseDays(days), from: parseTimeOfDay(from), to: parseTimeOfDay(to), every, label: `${days} ${from}-${to}` };
}
/** Local time: 2026-12-07 is a Monday. */
const local = (day: number, h: number, m = 0, s = 0) => new Date(2026, 11, day, h, m, s).getTime();
/** Every point from `start` for `count` points. */
function points(s: { nextAfter(now: number): number }, start: number, count: number): number[] {
  const out: number[] = [];
  for (let t = start; out.length < count; ) out.push((t = s.nextAfter(t)));
  return out;
}

describe('schedules by the time of day and week', () => {
  const office = win('mon-fri', '08:00', '18:00', 5 * MIN);
  const batch = win('daily', '01:00', '03:00', null);

  it('takes the interval of the window that holds, else the plain one, on that interval\'s marks', () => {
    const s = intervalSchedule(60 * MIN, 0, [office, batch]);
    // Monday 06:30: hourly until the office window opens at 08:00, then every 5 minutes.
    expect(points(s, local(7, 6, 30), 5)).toEqual([local(7, 7), local(7, 8), local(7, 8, 5), local(7, 8, 10), local(7, 8, 15)]);
    // Monday 17:50: the last office marks, then hourly again.
    expect(points(s, local(7, 17, 50), 4)).toEqual([local(7, 17, 55), local(7, 18), local(7, 19), local(7, 20)]);
    // Saturday: the office window does not open.
    expect(s.nextAfter(local(12, 9, 1))).toBe(local(12, 10));
  });

  it('takes no point inside a window of none, and resumes at its end', () => {
    const s = intervalSchedule(60 * MIN, 0, [office, batch]);
    expect(points(s, local(8, 0, 30), 3)).toEqual([local(8, 1), local(8, 3), local(8, 4)]);
    // A boundary off the interval's marks: the next regime's first mark after it.
    const odd = intervalSchedule(60 * MIN, 0, [win('daily', '10:20', '11:10', 15 * MIN)]);
    expect(points(odd, local(9, 9, 30), 6)).toEqual([local(9, 10), local(9, 10, 30), local(9, 10, 45), local(9, 11), local(9, 12), local(9, 13)]);
  });

  it('never falls if every window is none all week, and says so', () => {
    const s = intervalSchedule(60 * MIN, 0, [win('daily', '00:00', '00:00', null)]);
    expect(s.nextAfter(local(7, 9))).toBe(Infinity);
    expect(intervalSchedule(60 * MIN, 0, [office]).description).toBe('every 3600s, every 300s in mon-fri 08:00-18:00');
  });

  it('is read from the configuration, with each mistake at its key', () => {
    const base = { node: { name: 'a' } };
    const vol = (schedule: object) => ({ ...base, volumes: [{ name: 'db', size: '1GiB', schedule }] });
    const c = validateConfig(vol({ every: '1h', windows: [{ days: 'mon-fri', from: '08:00', to: '18:00', every: '5m' }, { from: '01:00', to: '03:00', every: 'none' }] }), 't', '/');
    const s = scheduleFrom(c.volumes[0].schedule!);
    expect(s.nextAfter(local(7, 8, 1))).toBe(local(7, 8, 5));
    expect(s.nextAfter(local(8, 0, 30))).toBe(local(8, 1));
    expect(s.nextAfter(local(8, 1, 30))).toBe(local(8, 3));
    const problem = (raw: object) => {
      try {
        validateConfig(raw, 't', '/');
      } catch (err) {
        return (err as Error).message;
      }
      return 'accepted';
    };
    expect(problem(vol({ every: '1h', windows: [{ from: '08:00', to: '18:00' }] }))).toContain('volumes[0].schedule.windows[0].every: a window needs its interval: e.g. 5m, or none for no points inside it');
    expect(problem(vol({ every: '1h', windows: [{ from: '8am', to: '18:00', every: '5m' }] }))).toContain('volumes[0].schedule.windows[0].from: not a time of day: "8am"');
    expect(problem(vol({ every: '1h', windows: [{ from: '08:00', to: '18:00', every: '500ms' }] }))).toContain('volumes[0].schedule.windows[0].every: snapshot points at least 1s apart');
    expect(problem(vol({ cron: '0 * * * *', windows: [{ from: '08:00', to: '18:00', every: '5m' }] }))).toContain('volumes[0].schedule.windows: windows change "every" by the time of day; a cron schedule has its own calendar');
    expect(problem(vol({ every: '1h', level: true, windows: [{ from: '08:00', to: '18:00', every: '5m' }] }))).toContain('volumes[0].schedule.level: leveling needs one interval');
    // A recovery-point target the schedule cannot meet: its longest interval is 1 h.
    expect(problem({ ...vol({ every: '5m', windows: [{ from: '22:00', to: '06:00', every: '1h' }] }), volumes: [{ name: 'db', size: '1GiB', rpoTarget: '30m', schedule: { every: '5m', windows: [{ from: '22:00', to: '06:00', every: '1h' }] } }] })).toContain('volumes[0].rpoTarget: 1800 s is not more than the schedule\'s interval (3600 s)');
    expect(problem({ ...base, volumes: [{ name: 'db', size: '1GiB', rpoTarget: '90m', schedule: { every: '5m', windows: [{ from: '22:00', to: '06:00', every: '1h' }] } }] })).toBe('accepted');
    // A cron schedule's points are an hour apart: a target of a minute is missed before every one.
    expect(problem({ ...base, volumes: [{ name: 'db', size: '1GiB', rpoTarget: '1m', schedule: { cron: '0 * * * *' } }] })).toContain('volumes[0].rpoTarget: 60 s is not more than the time between the cron schedule\'s points (at least 3600 s)');
    expect(problem({ ...base, volumes: [{ name: 'db', size: '1GiB', rpoTarget: '15m', schedule: { cron: '*/15 8-18 * * 1-5' } }] })).toContain('(at least 900 s)');
    // Nights and weekends without points are the operator's to allow for, as with windows of none.
    expect(problem({ ...base, volumes: [{ name: 'db', size: '1GiB', rpoTarget: '20m', schedule: { cron: '*/15 8-18 * * 1-5' } }] })).toBe('accepted');
    // Two volumes of a group with different windows do not close together.
    const group = (days: string) => ({ name: `v-${days}`, size: '1GiB', group: 'g', schedule: { every: '1h', windows: [{ days, from: '08:00', to: '18:00', every: '5m' }] } });
    expect(problem({ ...base, volumes: [group('mon-fri'), group('sat,sun')] })).toContain('volumes of group g close together: the same schedule');
  });
});
