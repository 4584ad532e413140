import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadWorkloads } from './index';

const T0 = 128166372003061629; // an MSR Cambridge timestamp (Windows 100 ns ticks)
const line = (s: number, disk: number, offset: number) => `${T0 + s * 1e7},hm,${disk},Write,${offset},4096,100`;

describe('loadWorkloads on traces not in time order', () => {
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'hs-workload-'));
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('starts the trace at its earliest record, not its first line', async () => {
    // The file's first line is its latest record (one line out of place).
    const path = join(dir, 'lastfirst.csv');
    const seconds = [0, 100, 200, 300, 400, 500, 600];
    await writeFile(path, [line(600, 0, 0), ...seconds.slice(0, -1).map((s, i) => line(s, 0, (i + 1) * 4096))].join('\n') + '\n');
    const [w] = await loadWorkloads(path, 'lastfirst.csv');
    expect(w.count).toBe(7);
    expect(w.duration).toBeCloseTo(600, 3);
    expect(Array.from(w.time)).toEqual(seconds.map((s) => expect.closeTo(s, 3)));
  });

  it('keeps the times of a disk whose log came second in the file but started earlier', async () => {
    // Two disks' logs concatenated: disk 1 began 300 s before disk 0's first record.
    const path = join(dir, 'concat.csv');
    const disk0 = [0, 60, 120, 180].map((s, i) => line(s, 0, i * 4096));
    const disk1 = [-300, -200, -100, 0].map((s, i) => line(s, 1, i * 4096));
    await writeFile(path, [...disk0, ...disk1].join('\n') + '\n');
    const [one] = await loadWorkloads(path, 'concat.csv', { volume: '1' });
    expect(Array.from(one.time)).toEqual([0, 100, 200, 300].map((s) => expect.closeTo(s, 3)));
    expect(one.duration).toBeCloseTo(480, 3);
  });
});
