import { describe, expect, it } from 'vitest';
import { formatBytes, formatDuration, formatRate, formatTarget } from './format';

describe('units', () => {
  it('bytes in binary units', () => {
    expect(formatBytes(0)).toBe('0 B');
    expect(formatBytes(4096)).toBe('4.00 KiB');
    expect(formatBytes(150 * 1048576)).toBe('150 MiB');
    expect(formatBytes(null)).toBe('—');
  });
  it('throughput in decimal MB/s', () => {
    expect(formatRate(125_000_000)).toBe('125 MB/s');
    expect(formatRate(12_345_678)).toBe('12.3 MB/s');
    expect(formatRate(500)).toBe('0.5 kB/s');
  });
  it('durations', () => {
    expect(formatDuration(850)).toBe('850 ms');
    expect(formatDuration(1500)).toBe('1.50 s');
    expect(formatDuration(125_000)).toBe('2 min 05 s');
    expect(formatDuration(3_723_000)).toBe('1 h 02 min');
    expect(formatDuration(Infinity)).toBe('—');
  });
  it('targets without false precision', () => {
    expect(formatTarget(5000)).toBe('5 s');
    expect(formatTarget(60_000)).toBe('1 min');
    expect(formatTarget(90_000)).toBe('1 min 30 s');
    expect(formatTarget(7_200_000)).toBe('2 h');
    expect(formatTarget(1500)).toBe('1.50 s');
  });
});
