import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { isHeadstartError } from '@headstart/errors';
import { createParser, detectFileFormat, detectFormat, parseTrace, readTrace, TraceRecorder, MAX_LINE_BYTES, type TraceFormat, type TraceRecord } from './index';

const FIXTURES = new URL('../fixtures/', import.meta.url).pathname;
const SHARED = new URL('../../../../shared/traces/', import.meta.url).pathname;

async function fixture(name: string): Promise<Buffer> {
  return readFile(join(FIXTURES, name));
}

async function collect(path: string, options = {}): Promise<{ format: TraceFormat; records: TraceRecord[] }> {
  const s = await readTrace(path, options);
  const records: TraceRecord[] = [];
  for await (const r of s) records.push(r);
  return { format: s.format, records };
}

describe('trace formats', () => {
  it('reads MSR Cambridge CSV: 100 ns ticks, byte offsets, DiskNumber as volume', async () => {
    const { format, records } = await collect(join(FIXTURES, 'msr.csv'));
    expect(format).toBe('msr');
    expect(records).toHaveLength(3);
    expect(records[0]).toEqual({ time: 0, op: 'write', offset: 8192, length: 4096, volume: '0' });
    expect(records[1].op).toBe('read');
    expect(records[1].volume).toBe('1');
    expect(records[2].time).toBeCloseTo(2, 5);
    expect(records[2]).toMatchObject({ offset: 12288, length: 8192 });
  });

  it('keeps one disk of a multi-disk trace', async () => {
    const { records } = await collect(join(FIXTURES, 'msr.csv'), { volume: '1' });
    expect(records).toEqual([expect.objectContaining({ op: 'read', volume: '1' })]);
    // Time stays on the whole trace's origin, so disks share one timeline.
    expect(records[0].time).toBeCloseTo(1, 5);
  });

  it('reads SNIA SPC: LBA in sectors, size in bytes, seconds', async () => {
    const { format, records } = await collect(join(FIXTURES, 'spc.csv'));
    expect(format).toBe('spc');
    expect(records[0]).toEqual({ time: 0, op: 'write', offset: 20941264 * 512, length: 8192, volume: '0' });
    expect(records[1].op).toBe('read');
    expect(records[2].time).toBeCloseTo(1, 9);
  });

  it('reads FIU blkparse text: ns, sectors, major:minor as volume', async () => {
    const { format, records } = await collect(join(FIXTURES, 'fiu.txt'));
    expect(format).toBe('fiu');
    expect(records[0]).toEqual({ time: 0, op: 'write', offset: 74228064 * 512, length: 4096, volume: '6:0' });
    expect(records[2]).toMatchObject({ op: 'write', offset: 51200, length: 8192, volume: '8:1' });
    expect(records[2].time).toBeCloseTo(1, 6);
  });

  it('reads FIU lines whose process name has spaces, with or without the md5', () => {
    const { records } = parseTrace(Buffer.from('89974261659200 4164 kworker u8 1 74228064 8 W 6 0 3f5c2e8e1c9d7d1c1d4c3b2a19087f6e\n89975261659200 4164 syslogd 64 16 W 6 0\n'), { format: 'fiu' });
    expect(records).toEqual([
      { time: 0, op: 'write', offset: 74228064 * 512, length: 4096, volume: '6:0' },
      { time: 1, op: 'write', offset: 64 * 512, length: 8192, volume: '6:0' },
    ]);
  });

  it('reads blkparse default output: each bio once, at its Q event; summaries skipped', async () => {
    const { format, records } = await collect(join(FIXTURES, 'blkparse.txt'));
    expect(format).toBe('blkparse');
    // Times count from the first record: the first Q, 0.00000031 s into the recording.
    const at = (s: number) => expect.closeTo(s - 0.00000031, 9);
    expect(records).toEqual([
      // The journal write, queued as two bios (merged later: M, then one D and one C of 16 sectors).
      { time: 0, op: 'write', offset: 223490 * 512, length: 4096, volume: '8:0' },
      { time: at(0.0000031), op: 'write', offset: 223498 * 512, length: 4096, volume: '8:0' },
      { time: at(0.25), op: 'read', offset: 272208 * 512, length: 1024, volume: '8:0' },
      { time: at(0.5), op: 'flush', offset: 0, length: 0, volume: '8:0' },
      // A discard (its split, X, is not a second request).
      { time: at(1), op: 'trim', offset: 4096 * 512, length: 2048 * 512, volume: '8:16' },
      { time: at(1.5), op: 'write', offset: 1024 * 512, length: 256 * 512, volume: '8:16' },
    ]);
    // Written blocks: 2 x 4 KiB journal + 128 KiB, as blkparse's own "Writes Queued" totals (136KiB).
    expect(records.filter((r) => r.op === 'write').reduce((a, r) => a + r.length, 0)).toBe(136 * 1024);
  });

  it('reads a blkparse trace filtered to completions (-a complete), and requests under way when tracing began', () => {
    const completions = [
      '  8,0    0        1     0.000106130     0  C  WS 223490 + 16 [0]',
      '  8,0    0        2     0.250300000     0  C   R 272208 + 2 [0]',
      '  8,0    0        3     0.500020000     0  C FWS 0 [0]',
      '  8,16   0        4     1.600000000     0  C   W 1024 + 256 [0]',
    ].join('\n');
    const filtered = parseTrace(Buffer.from(completions + '\n'));
    expect(filtered.format).toBe('blkparse');
    expect(filtered.records.map((r) => [r.op, r.offset, r.length, r.volume])).toEqual([
      ['write', 223490 * 512, 16 * 512, '8:0'],
      ['read', 272208 * 512, 1024, '8:0'],
      ['flush', 0, 0, '8:0'],
      ['write', 1024 * 512, 256 * 512, '8:16'],
    ]);
    // Unfiltered, begun while two writes were under way: the one issued before tracing (its D
    // and C, no Q) is counted once, at its D; from the first Q on, only Q events count.
    const unfiltered = [
      '  8,0    1        1     0.000000000     0  D   W 800 + 8 [kworker]',
      '  8,0    0        2     0.000050000     0  C   W 800 + 8 [0]',
      '  8,0    1        3     0.000100000   697  Q   W 900 + 8 [dd]',
      '  8,0    1        4     0.000200000   697  D   W 900 + 8 [dd]',
      '  8,0    0        5     0.000300000     0  C   W 900 + 8 [0]',
    ].join('\n');
    expect(parseTrace(Buffer.from(unfiltered + '\n'), { format: 'blkparse' }).records.map((r) => r.offset / 512)).toEqual([800, 900]);
  });

  it('names the line of a malformed blkparse event', () => {
    expect(() => parseTrace(Buffer.from('  8,0    1        1     0.000000000   697  Q  WS 223490 + 8 [jbd2]\n  8,0    1        2     0.1   697  Q  WS x + 8 [jbd2]\n'), { format: 'blkparse' })).toThrow(
      expect.objectContaining({ code: 'TRACE_MALFORMED', message: 'blkparse trace, line 2: sector is not a number: "x"' }),
    );
  });

  it('reads Alibaba CSV: bytes and microseconds', async () => {
    const { format, records } = await collect(join(FIXTURES, 'alibaba.csv'));
    expect(format).toBe('alibaba');
    expect(records[0]).toEqual({ time: 0, op: 'write', offset: 1048576, length: 4096, volume: '3' });
    expect(records[2]).toEqual({ time: 2, op: 'write', offset: 8192, length: 16384, volume: '7' });
  });

  it('reads headstart recordings', async () => {
    const { format, records } = await collect(join(FIXTURES, 'headstart.csv'));
    expect(format).toBe('headstart');
    expect(records.map((r) => r.op)).toEqual(['write', 'write', 'trim']);
    expect(records[1].time).toBeCloseTo(0.5005, 6);
    expect(records[2]).toMatchObject({ offset: 1048576, length: 65536 });
  });

  it('reads VMware vscsi v1 binary records', async () => {
    const { format, records } = await collect(join(FIXTURES, 'cloudphysics-like.vscsi'));
    expect(format).toBe('vscsi');
    expect(records).toEqual([
      { time: 0, op: 'write', offset: 2048 * 512, length: 4096 },
      { time: 0.25, op: 'read', offset: 0, length: 512 },
      { time: 2, op: 'write', offset: 4096 * 512, length: 8192 },
    ]);
  });

  it('gives the same records however the input is chunked (every split offset)', async () => {
    for (const name of ['msr.csv', 'spc.csv', 'fiu.txt', 'alibaba.csv', 'headstart.csv', 'cloudphysics-like.vscsi']) {
      const bytes = await fixture(name);
      const whole = parseTrace(bytes);
      for (let cut = 0; cut <= bytes.length; cut++) {
        const p = createParser(whole.format);
        const got = [...p.feed(bytes.subarray(0, cut)), ...p.feed(bytes.subarray(cut)), ...p.end()];
        expect(got, `${name} split at ${cut}`).toEqual(whole.records);
      }
      // And one byte at a time.
      const p = createParser(whole.format);
      const got: TraceRecord[] = [];
      for (let i = 0; i < bytes.length; i++) got.push(...p.feed(bytes.subarray(i, i + 1)));
      got.push(...p.end());
      expect(got, `${name} byte by byte`).toEqual(whole.records);
    }
  });
});

describe('malformed input', () => {
  it('names the line of a malformed record', async () => {
    const err = await collect(join(FIXTURES, 'msr-bad-op.csv'), { format: 'msr' }).catch((e) => e);
    expect(isHeadstartError(err, 'TRACE_MALFORMED')).toBe(true);
    expect(err.message).toContain('line 3');
    expect(err.message).toContain('Wrote');
  });

  it('skips and counts malformed records when lenient', async () => {
    const s = await readTrace(join(FIXTURES, 'msr-bad-op.csv'), { format: 'msr', lenient: true });
    const records: TraceRecord[] = [];
    for await (const r of s) records.push(r);
    expect(records).toHaveLength(2);
    expect(s.stats.skipped).toBe(1);
    expect(s.stats.problems[0]).toMatch(/^line 3: /);
  });

  it('rejects a truncated vscsi record and a wrong version', async () => {
    const bytes = await fixture('cloudphysics-like.vscsi');
    const p = createParser('vscsi');
    p.feed(bytes.subarray(0, 40));
    expect(() => p.end()).toThrow(/record 2: truncated/);
    const bad = Buffer.from(bytes);
    bad.writeUInt16LE(0x0200, 32 + 14);
    expect(() => parseTrace(bad, { format: 'vscsi' })).toThrow(/record 2: version field 0x200/);
  });

  it('rejects negative, fractional and non-numeric fields', () => {
    const cases = ['1,W,-5,4096,10', '1,W,5.5,4096,10', '1,W,0x10,4096,10', '1,W,0,4096', '1,W,0,4096,10,11'];
    for (const line of cases) {
      const err = (() => {
        try {
          parseTrace(Buffer.from(line + '\n'), { format: 'alibaba' });
        } catch (e) {
          return e;
        }
      })();
      expect(isHeadstartError(err, 'TRACE_MALFORMED'), line).toBe(true);
      expect((err as Error).message).toContain('line 1');
    }
  });

  it('refuses an endless line instead of buffering it', () => {
    const p = createParser('msr', { lenient: true });
    p.feed(Buffer.alloc(MAX_LINE_BYTES * 3, 0x41));
    const out = p.feed(Buffer.from('\n1,h,0,Write,0,4096,0\n'));
    expect(out).toHaveLength(1);
    expect(p.stats.skipped).toBe(1);
  });

  it('detects formats from content and refuses what it cannot tell', () => {
    expect(() => detectFormat(Buffer.alloc(0))).toThrow(/empty/);
    expect(() => detectFormat(Buffer.from('hello world\nthis is not a trace\n'), true)).toThrow(expect.objectContaining({ code: 'TRACE_FORMAT_UNKNOWN' }));
    expect(() => detectFormat(Buffer.from([0, 1, 2, 3, 4, 5, 6, 7, 8, 9]), true)).toThrow(/binary/);
  });

  it('never fails with anything but TRACE_MALFORMED on garbage (fuzz)', () => {
    fc.assert(
      fc.property(fc.constantFrom<TraceFormat>('vscsi', 'msr', 'spc', 'fiu', 'alibaba', 'headstart'), fc.uint8Array({ maxLength: 300 }), fc.nat(300), (format, bytes, cut) => {
        const p = createParser(format);
        try {
          const out = [...p.feed(bytes.subarray(0, cut)), ...p.feed(bytes.subarray(cut)), ...p.end()];
          for (const r of out) {
            expect(Number.isFinite(r.time)).toBe(true);
            expect(r.offset).toBeGreaterThanOrEqual(0);
            expect(r.length).toBeGreaterThanOrEqual(0);
          }
        } catch (err) {
          expect(isHeadstartError(err, 'TRACE_MALFORMED')).toBe(true);
        }
      }),
      { numRuns: 300 },
    );
  });
});

describe('TraceRecorder', () => {
  let dir: string;
  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'hs-traces-'));
  });
  afterEach(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('records what it is told and reads back as a headstart trace', async () => {
    let now = 1_000_000;
    const path = join(dir, 'rec.csv');
    const rec = await TraceRecorder.open(path, { clock: { now: () => now } });
    rec.record({ op: 'write', offset: 0, length: 4096 });
    now += 250;
    rec.record({ op: 'write', offset: 8192, length: 512 });
    rec.record({ op: 'trim', offset: 65536, length: 4096, time: now + 1000 });
    await rec.close();
    expect(rec.recorded).toBe(3);
    expect(await detectFileFormat(path)).toBe('headstart');
    const { records } = await collect(path);
    expect(records).toEqual([
      { time: 0, op: 'write', offset: 0, length: 4096 },
      { time: 0.25, op: 'write', offset: 8192, length: 512 },
      { time: 1.25, op: 'trim', offset: 65536, length: 4096 },
    ]);
    // A later session appends on the same timeline.
    const again = await TraceRecorder.open(path, { clock: { now: () => now + 5000 } });
    again.record({ op: 'write', offset: 4096, length: 4096 });
    await again.close();
    const all = await collect(path);
    expect(all.records).toHaveLength(4);
    expect(all.records[3].time).toBeCloseTo(5.25, 6);
    expect(() => again.record({ op: 'write', offset: 0, length: 1 })).toThrow(/closed/);
  });

  it('refuses bad requests and foreign files', async () => {
    const rec = await TraceRecorder.open(join(dir, 'r.csv'));
    expect(() => rec.record({ op: 'write', offset: -1, length: 4096 })).toThrow(expect.objectContaining({ code: 'PLANNER_BAD_INPUT' }));
    expect(() => rec.record({ op: 'write', offset: 0, length: 4096, time: NaN })).toThrow(expect.objectContaining({ code: 'PLANNER_BAD_INPUT' }));
    await rec.close();
    const other = join(dir, 'other.csv');
    await writeFile(other, 'not,a,headstart,trace\n');
    await expect(TraceRecorder.open(other)).rejects.toMatchObject({ code: 'TRACE_FORMAT_UNKNOWN' });
    await expect(readTrace(join(dir, 'missing.csv'))).rejects.toMatchObject({ code: 'TRACE_IO' });
  });
});

describe.skipIf(!existsSync(SHARED))('shared traces (when present)', () => {
  const expected: Record<string, { format: TraceFormat; records: number; writes: number; volumes: number }> = {
    'cloudphysics-vm.vscsi': { format: 'vscsi', records: 113_872, writes: 66_898, volumes: 1 },
    'hp-ajw-week.csv': { format: 'msr', records: 44_519, writes: 31_479, volumes: 2 },
    'postgres-pgbench.csv': { format: 'msr', records: 560_855, writes: 560_855, volumes: 1 },
  };
  for (const [name, want] of Object.entries(expected)) {
    it.skipIf(!existsSync(join(SHARED, name)))(`reads ${name} as its README describes`, async () => {
      const s = await readTrace(join(SHARED, name));
      let records = 0;
      let writes = 0;
      const volumes = new Set<string | undefined>();
      let last = -Infinity;
      for await (const r of s) {
        records++;
        if (r.op === 'write') writes++;
        volumes.add(r.volume);
        last = Math.max(last, r.time);
      }
      expect(s.format).toBe(want.format);
      expect(records).toBe(want.records);
      expect(writes).toBe(want.writes);
      expect(volumes.size).toBe(want.volumes);
      expect(s.stats.skipped).toBe(0);
      expect(last).toBeGreaterThan(0);
    });
  }
});
