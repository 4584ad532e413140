/** Variants that published trace files have, and the errors a user sees on a bad one. */
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { isHeadstartError } from '@headstart/errors';
import { detectFileFormat, parseTrace, readTrace, type TraceRecord } from './index';

const T0 = 128166372003061629;
const msrLines = (n: number) => Array.from({ length: n }, (_, i) => `${T0 + i * 1e7},hm,0,Write,${i * 4096},4096,100`);

async function collect(path: string): Promise<TraceRecord[]> {
  const out: TraceRecord[] = [];
  for await (const r of await readTrace(path)) out.push(r);
  return out;
}

async function failure(p: Promise<unknown>): Promise<{ code: string; message: string }> {
  try {
    await p;
  } catch (err) {
    if (!isHeadstartError(err)) throw err;
    return { code: err.code, message: err.message };
  }
  throw new Error('expected a failure');
}

describe('trace files as published, and bad ones', () => {
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'hs-realfiles-'));
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('names the file of a malformed line, as well as the line', async () => {
    const path = join(dir, 'late.csv');
    const lines = msrLines(100);
    lines[79] = lines[79].replace('Write', 'Wrte');
    await writeFile(path, lines.join('\n') + '\n');
    const e = await failure(collect(path));
    expect(e.code).toBe('TRACE_MALFORMED');
    expect(e.message).toContain(path);
    expect(e.message).toContain('line 80');
  });

  it('names the problem line when a bad line sits among the lines detection samples', async () => {
    const path = join(dir, 'early.csv');
    const lines = msrLines(100);
    lines[2] = lines[2].replace('Write', 'Wrte');
    await writeFile(path, lines.join('\n') + '\n');
    const e = await failure(detectFileFormat(path));
    expect(e.message).toContain(path);
    expect(e.message).toMatch(/msr trace, line 3: unknown operation "Wrte"/);
  });

  it('says a file with a header and no records has no records, naming the file', async () => {
    const path = join(dir, 'header.csv');
    await writeFile(path, 'Timestamp,Hostname,DiskNumber,Type,Offset,Size,ResponseTime\n');
    const e = await failure(detectFileFormat(path));
    expect(e.message).toContain(path);
    expect(e.message).toMatch(/header and no records/);
  });

  it('reads SPC lines with optional fields after the fifth', () => {
    const text = ['0,303567,3584,w,0.000000,1,0', '1,303575,4096,r,0.002641,1,0', '0,303583,8192,W,0.010000,1,0'].join('\n') + '\n';
    const { format, records } = parseTrace(Buffer.from(text));
    expect(format).toBe('spc');
    expect(records.map((r) => [r.op, r.offset, r.length, r.volume])).toEqual([
      ['write', 303567 * 512, 3584, '0'],
      ['read', 303575 * 512, 4096, '1'],
      ['write', 303583 * 512, 8192, '0'],
    ]);
  });

  it('says an offset beyond any disk is out of range, not fractional', () => {
    const text = [...msrLines(3), `${T0 + 4e7},hm,0,Write,99999999999999999999,4096,100`].join('\n') + '\n';
    expect(() => parseTrace(Buffer.from(text), { format: 'msr' })).toThrow(/line 4: offset .* beyond 2\^53 bytes/);
  });

  it('detects the format of a sample with a malformed line when reading leniently, and skips that line', async () => {
    const path = join(dir, 'lenient.csv');
    const lines = msrLines(30);
    lines[2] = lines[2].replace('Write', 'Wrte');
    await writeFile(path, lines.join('\n') + '\n');
    expect((await failure(detectFileFormat(path))).message).toMatch(/line 3: unknown operation "Wrte" \(19 of the first 20 records read as msr/);
    expect(await detectFileFormat(path, true)).toBe('msr');
    const stream = await readTrace(path, { lenient: true });
    let n = 0;
    for await (const _ of stream) n++;
    expect(n).toBe(29);
    expect(stream.stats).toMatchObject({ skipped: 1, problems: ['line 3: unknown operation "Wrte"'] });
  });

  it('takes a major:minor disk as blkparse prints it (8,0) or as FIU traces do (8:0)', () => {
    const md5 = (i: number) => `a5e4b0c2${String(i).padStart(24, '0')}`;
    const text = [`89757316469 4419 nfsd 284470872 8 W 6 0 ${md5(1)}`, `89757316470 4419 nfsd 284470880 8 W 8 0 ${md5(2)}`, `89757316471 4419 nfsd 284470888 8 W 6 0 ${md5(3)}`].join('\n') + '\n';
    for (const volume of ['6,0', '6:0']) expect(parseTrace(Buffer.from(text), { format: 'fiu', volume }).records).toHaveLength(2);
  });

  it('reads FIU lines with one MD5 per 512 bytes, and says when the last field is not an MD5', () => {
    const md5s = Array.from({ length: 8 }, (_, i) => `${'f'.repeat(31)}${i}`).join(' ');
    const { records } = parseTrace(Buffer.from(`89757316469 4419 nfsd 284470872 8 W 6 0 ${md5s}\n`), { format: 'fiu' });
    expect(records.map((r) => [r.offset, r.length, r.volume])).toEqual([[284470872 * 512, 4096, '6:0']]);
    expect(() => parseTrace(Buffer.from('89757316469 4419 nfsd 284470872 8 W 6 0 a5e4b0c2\n'), { format: 'fiu' })).toThrow(/got 9, the last not an MD5 \(32 hex digits\): "a5e4b0c2"/);
  });
});
