/**
 * Line-oriented trace formats: one function per format turns one line's fields into raw
 * record values, or says why it cannot. Timestamps stay in each format's own unit here;
 * the parser rebases them to seconds from the first record.
 */
import type { TraceFormat, TraceOp } from '../types';

export interface RawRecord {
  /** Seconds in the trace's own epoch. */
  readonly t: number;
  readonly op: TraceOp;
  readonly offset: number;
  readonly length: number;
  readonly volume?: string;
}

/** A line that is not a record but is allowed (a header, a comment). */
export const SKIP = 'skip' as const;
export type LineResult = RawRecord | typeof SKIP | { readonly error: string };

type LineParser = (line: string) => LineResult;

const SECTOR = 512;
/** Windows FILETIME ticks (MSR Cambridge timestamps) are 100 ns. */
const TICKS_PER_SECOND = 1e7;

function num(field: string | undefined, what: string): number | { error: string } {
  if (field === undefined) return { error: `missing ${what}` };
  const s = field.trim();
  if (s === '' || !/^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$/.test(s)) return { error: `${what} is not a number: ${JSON.stringify(s.slice(0, 40))}` };
  const v = Number(s);
  if (!Number.isFinite(v)) return { error: `${what} is not finite` };
  return v;
}

function nonNegative(v: number | { error: string }, what: string): number | { error: string } {
  if (typeof v !== 'number') return v;
  if (v < 0) return { error: `${what} is negative` };
  return v;
}

function opFromWord(word: string): TraceOp | null {
  switch (word.trim().toLowerCase()) {
    case 'w':
    case 'write':
    case 'ws':
      return 'write';
    case 'r':
    case 'read':
    case 'rs':
      return 'read';
    case 'trim':
    case 'discard':
    case 'd':
      return 'trim';
    case 'flush':
    case 'f':
      return 'flush';
    default:
      return null;
  }
}

function build(t: number | { error: string }, op: TraceOp | null, opWord: string, offset: number | { error: string }, length: number | { error: string }, volume?: string): LineResult {
  if (typeof t !== 'number') return t;
  if (op === null) return { error: `unknown operation ${JSON.stringify(opWord.slice(0, 20))}` };
  if (typeof offset !== 'number') return offset;
  if (typeof length !== 'number') return length;
  if (!Number.isSafeInteger(offset) || !Number.isSafeInteger(length)) return { error: 'offset and length must be whole bytes' };
  return volume === undefined ? { t, op, offset, length } : { t, op, offset, length, volume };
}

/** MSR Cambridge: `Timestamp,Hostname,DiskNumber,Type,Offset,Size,ResponseTime`. */
const msr: LineParser = (line) => {
  const f = line.split(',');
  if (f.length !== 7) return /^timestamp,/i.test(line) ? SKIP : { error: `expected 7 comma-separated fields, got ${f.length}` };
  if (/^timestamp$/i.test(f[0].trim())) return SKIP;
  const disk = f[2].trim();
  if (!/^\d+$/.test(disk)) return { error: `DiskNumber is not a whole number: ${JSON.stringify(disk.slice(0, 20))}` };
  const ticks = nonNegative(num(f[0], 'Timestamp'), 'Timestamp');
  return build(typeof ticks === 'number' ? ticks / TICKS_PER_SECOND : ticks, opFromWord(f[3]), f[3], nonNegative(num(f[4], 'Offset'), 'Offset'), nonNegative(num(f[5], 'Size'), 'Size'), disk);
};

/** SNIA SPC (UMass): `ASU,LBA,Size,Op,Timestamp`, LBA in 512-byte sectors, Size in bytes, Timestamp in seconds. */
const spc: LineParser = (line) => {
  const f = line.split(',');
  if (f.length < 5 || f.length > 6) return /^asu,/i.test(line) ? SKIP : { error: `expected 5 comma-separated fields, got ${f.length}` };
  if (/^asu$/i.test(f[0].trim())) return SKIP;
  const asu = f[0].trim();
  if (!/^\d+$/.test(asu)) return { error: `ASU is not a whole number: ${JSON.stringify(asu.slice(0, 20))}` };
  const lba = nonNegative(num(f[1], 'LBA'), 'LBA');
  return build(nonNegative(num(f[4], 'Timestamp'), 'Timestamp'), opFromWord(f[3]), f[3], typeof lba === 'number' ? lba * SECTOR : lba, nonNegative(num(f[2], 'Size'), 'Size'), asu);
};

/** Alibaba block traces: `device_id,opcode,offset,length,timestamp`, bytes, timestamp in microseconds. */
const alibaba: LineParser = (line) => {
  const f = line.split(',');
  if (f.length !== 5) return /^device_id,/i.test(line) ? SKIP : { error: `expected 5 comma-separated fields, got ${f.length}` };
  if (/^device_id$/i.test(f[0].trim())) return SKIP;
  const dev = f[0].trim();
  if (!/^\d+$/.test(dev)) return { error: `device_id is not a whole number: ${JSON.stringify(dev.slice(0, 20))}` };
  const us = nonNegative(num(f[4], 'timestamp'), 'timestamp');
  return build(typeof us === 'number' ? us / 1e6 : us, opFromWord(f[1]), f[1], nonNegative(num(f[2], 'offset'), 'offset'), nonNegative(num(f[3], 'length'), 'length'), dev);
};

/**
 * FIU (blkparse-style): `ts pid process lba size op major minor md5`, whitespace-separated;
 * ts in nanoseconds, lba and size in 512-byte sectors.
 */
const fiu: LineParser = (line) => {
  const f = line.trim().split(/\s+/);
  if (f.length < 8 || f.length > 9) return { error: `expected 9 whitespace-separated fields, got ${f.length}` };
  const ns = nonNegative(num(f[0], 'ts'), 'ts');
  const lba = nonNegative(num(f[3], 'lba'), 'lba');
  const size = nonNegative(num(f[4], 'size'), 'size');
  if (!/^\d+$/.test(f[6]) || !/^\d+$/.test(f[7])) return { error: 'major and minor must be whole numbers' };
  return build(typeof ns === 'number' ? ns / 1e9 : ns, opFromWord(f[5]), f[5], typeof lba === 'number' ? lba * SECTOR : lba, typeof size === 'number' ? size * SECTOR : size, `${f[6]}:${f[7]}`);
};

/** The header line of headstart's own recording format (see recorder.ts). */
export const HEADSTART_HEADER = '# headstart-trace v1 time_ms,op,offset,length';

/** headstart's recording: `time_ms,op,offset,length` after the header; `#` lines are comments. */
const headstart: LineParser = (line) => {
  if (line.startsWith('#')) return SKIP;
  const f = line.split(',');
  if (f.length !== 4) return { error: `expected 4 comma-separated fields (time_ms,op,offset,length), got ${f.length}` };
  const ms = nonNegative(num(f[0], 'time_ms'), 'time_ms');
  return build(typeof ms === 'number' ? ms / 1000 : ms, opFromWord(f[1]), f[1], nonNegative(num(f[2], 'offset'), 'offset'), nonNegative(num(f[3], 'length'), 'length'));
};

export const LINE_PARSERS: Record<Exclude<TraceFormat, 'vscsi'>, LineParser> = { msr, spc, alibaba, fiu, headstart };
