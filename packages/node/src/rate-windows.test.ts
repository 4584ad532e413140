import { describe, expect, it } from 'vitest';
import { capAt, parseDays, parseTimeOfDay, type RateWindow } from './rate-windows';

const MB = 1e6;
function win(days: string, from: string, to: string, rate: number | null): RateWindow {
  return { days: parseDays(days), from: parseTimeOfDay(from), to: parseTimeOfDay(to), rate, label: `${days} ${from}-${to}` };
}
/** Local time: 2026-12-07 is a Monday. */
const local = (day: number, h: number, m = 0, s = 0) => new Date(2026, 11, day, h, m, s).getTime();

describe('link caps that follow the clock', () => {
  const office = win('mon-fri', '08:00', '18:00', 10 * MB);
  const night = win('daily', '22:00', '06:00', null);

  it('takes the first window that holds the moment, else the plain cap', () => {
    const both = [office, night];
    expect(capAt(both, 50 * MB, local(7, 9))).toMatchObject({ rate: 10 * MB, window: office, until: local(7, 18) });
    expect(capAt(both, 50 * MB, local(7, 19))).toMatchObject({ rate: 50 * MB, window: null, until: local(7, 22) });
    // Saturday: the office window does not open.
    expect(capAt(both, 50 * MB, local(12, 9))).toMatchObject({ rate: 50 * MB, window: null, until: local(12, 22) });
    // Order matters where windows overlap: the first written wins.
    const wide = win('daily', '00:00', '00:00', 1 * MB);
    expect(capAt([office, wide], 50 * MB, local(7, 9)).rate).toBe(10 * MB);
    expect(capAt([wide, office], 50 * MB, local(7, 9)).rate).toBe(1 * MB);
  });

  it('runs a window past midnight, on the day it starts', () => {
    // Monday 02:00 is in Sunday's night window; it ends at 06:00.
    expect(capAt([night], 50 * MB, local(7, 2))).toMatchObject({ rate: null, window: night, until: local(7, 6) });
    const fridayNight = win('fri', '22:00', '06:00', 1 * MB);
    expect(capAt([fridayNight], 50 * MB, local(12, 3)).rate).toBe(1 * MB); // Saturday 03:00
    expect(capAt([fridayNight], 50 * MB, local(13, 3)).rate).toBe(50 * MB); // Sunday 03:00
    expect(capAt([fridayNight], 50 * MB, local(11, 21, 59, 59))).toMatchObject({ rate: 50 * MB, until: local(11, 22) });
  });

  it('starts a window at its first second and ends it before its last', () => {
    expect(capAt([office], null, local(7, 8)).rate).toBe(10 * MB);
    expect(capAt([office], null, local(7, 7, 59, 59)).rate).toBeNull();
    expect(capAt([office], null, local(7, 18)).rate).toBeNull();
    expect(capAt([win('mon', '12:00:30', '12:00:45', 5)], null, local(7, 12, 0, 40))).toMatchObject({ rate: 5, until: local(7, 12, 0, 45) });
  });

  it('says when the cap may change next, within a week, or never', () => {
    // Friday 19:00 in the office-only schedule: next Monday 08:00.
    expect(capAt([office], null, local(11, 19)).until).toBe(local(14, 8));
    expect(capAt([], 5, local(7, 9))).toEqual({ rate: 5, window: null, until: Infinity });
  });

  it('reads days and times as an operator writes them, and refuses anything else', () => {
    expect([...parseDays('mon-fri')!].sort()).toEqual([1, 2, 3, 4, 5]);
    expect([...parseDays('Sat, sun')!].sort()).toEqual([0, 6]);
    expect([...parseDays('fri-mon')!].sort()).toEqual([0, 1, 5, 6]);
    expect([...parseDays('monday,wed-thu')!].sort()).toEqual([1, 3, 4]);
    expect(parseDays('daily')).toBeNull();
    for (const bad of ['', 'weekdays', 'mon-', 'mo', 'mon-tue-wed', 'mon;tue']) expect(() => parseDays(bad), bad).toThrow(/not a list of days/);
    expect(parseTimeOfDay('8:00')).toBe(8 * 3600);
    expect(parseTimeOfDay('22:30:15')).toBe(22 * 3600 + 30 * 60 + 15);
    expect(parseTimeOfDay('24:00')).toBe(86400);
    for (const bad of ['25:00', '24:01', '12:60', '12', '12:00:60', 'noon', '-1:00']) expect(() => parseTimeOfDay(bad), bad).toThrow(/not a time of day/);
  });
});
