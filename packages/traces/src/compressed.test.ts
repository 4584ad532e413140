import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtemp, readFile, rm, symlink, truncate, writeFile, mkdir } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { detectFileFormat, readTrace, type TraceRecord } from './index';

const FIXTURES = new URL('../fixtures/', import.meta.url).pathname;

async function collect(path: string): Promise<{ format: string; records: TraceRecord[] }> {
  const s = await readTrace(path);
  const records: TraceRecord[] = [];
  for await (const r of s) records.push(r);
  return { format: s.format, records };
}

/** An MSR Cambridge trace of `n` writes, big enough that detection stops well before its end. */
function msrLines(n: number): string {
  const lines: string[] = [];
  for (let i = 0; i < n; i++) lines.push(`${128166372003061629 + i * 10_000},hm,0,Write,${(i % 5000) * 4096},4096,26`);
  return lines.join('\n') + '\n';
}

/** Children of this process running `program` (pgrep -P). */
function children(program: string): string {
  const r = spawnSync('pgrep', ['-P', String(process.pid), '-x', program], { encoding: 'utf8' });
  return r.stdout.trim();
}

describe('compressed traces', () => {
  let dir: string;
  let plain: { format: string; records: TraceRecord[] };
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'hs-traces-z-'));
    plain = await collect(join(FIXTURES, 'msr.csv'));
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('reads a gzip trace as the plain one, multi-member files whole', async () => {
    const text = await readFile(join(FIXTURES, 'msr.csv'));
    const gz = join(dir, 'msr.csv.gz');
    await writeFile(gz, gzipSync(text));
    expect(await collect(gz)).toEqual(plain);
    // `cat a.gz b.gz > c.gz` is one valid gzip file of both: a reader that stops at the
    // first member drops the rest of the trace without a word.
    const twice = join(dir, 'twice.gz');
    await writeFile(twice, Buffer.concat([gzipSync(text), gzipSync(text)]));
    const both = await collect(twice);
    expect(both.records).toHaveLength(2 * plain.records.length);
    expect(both.records.slice(plain.records.length).map((r) => r.offset)).toEqual(plain.records.map((r) => r.offset));
  });

  // Debian's bzip2, xz-utils, zstd and lz4 (.ci/run installs them).
  it.each(['bzip2', 'xz', 'zstd', 'lz4'])('reads a %s trace through the system program', async (program) => {
    const path = join(dir, `msr.csv.${program}`);
    await writeFile(path, execFileSync(program, ['-c'], { input: await readFile(join(FIXTURES, 'msr.csv')) }));
    expect(await detectFileFormat(path)).toBe('msr');
    expect(await collect(path)).toEqual(plain);
  });

  it('stops the decompressor when detection has read enough, and when a reader stops early', async () => {
    const path = join(dir, 'big.csv.zst');
    // ~6 MB of text: more than detection reads and more than a pipe holds.
    await writeFile(path, execFileSync('zstd', ['-c', '-1'], { input: msrLines(100_000) }));
    expect(await detectFileFormat(path)).toBe('msr');
    expect(children('zstd')).toBe('');
    let n = 0;
    for await (const r of await readTrace(path)) {
      expect(r.op).toBe('write');
      if (++n === 10) break;
    }
    expect(children('zstd')).toBe('');
  });

  it('says when a compressed trace is cut short, and where it was', async () => {
    const gz = join(dir, 'cut.csv.gz');
    await writeFile(gz, gzipSync(msrLines(20_000)));
    await truncate(gz, 20_000);
    await expect(collect(gz)).rejects.toMatchObject({ code: 'TRACE_MALFORMED', message: expect.stringMatching(/cut\.csv\.gz: its gzip stream is damaged or cut short/) });
    const zst = join(dir, 'cut.csv.zst');
    await writeFile(zst, execFileSync('zstd', ['-c'], { input: msrLines(20_000) }));
    await truncate(zst, 5_000);
    await expect(collect(zst)).rejects.toMatchObject({ code: 'TRACE_MALFORMED', message: expect.stringMatching(/its zstd stream is damaged or cut short \(zstd exited with status 1/) });
  });

  it('names the program and the package when the decompressor is missing', async () => {
    const path = join(dir, 'msr.csv.bz2');
    await writeFile(path, execFileSync('bzip2', ['-c'], { input: await readFile(join(FIXTURES, 'msr.csv')) }));
    const empty = join(dir, 'no-programs');
    await mkdir(empty);
    const saved = process.env.PATH;
    process.env.PATH = empty;
    try {
      await expect(collect(path)).rejects.toMatchObject({
        code: 'TRACE_IO',
        message: expect.stringContaining('is bzip2-compressed and there is no `bzip2` program on PATH to decompress it: install it (Debian: apt-get install bzip2)'),
      });
    } finally {
      process.env.PATH = saved;
    }
  });

  it('refuses an archive, compressed or not, instead of reading its headers as a trace', async () => {
    const src = join(dir, 'src');
    await mkdir(src);
    await symlink(join(FIXTURES, 'msr.csv'), join(src, 'msr.csv'));
    const tar = join(dir, 'traces.tar');
    execFileSync('tar', ['-chf', tar, '-C', src, 'msr.csv']);
    await expect(detectFileFormat(tar)).rejects.toMatchObject({ code: 'TRACE_FORMAT_UNKNOWN', message: expect.stringContaining('is a tar archive, not one trace') });
    const tgz = join(dir, 'traces.tar.gz');
    await writeFile(tgz, gzipSync(await readFile(tar)));
    await expect(collect(tgz)).rejects.toMatchObject({ code: 'TRACE_FORMAT_UNKNOWN', message: expect.stringContaining('traces.tar.gz is a tar archive') });
  });
});
