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
  if (!Number.isInteger(offset) || !Number.isInteger(length)) return { error: 'offset and length must be whole bytes' };
  if (!Number.isSafeInteger(offset + length)) return { error: `offset ${offset} + length ${length} is beyond 2^53 bytes (8 PiB): not a disk address` };
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

/**
 * SNIA SPC (UMass): `ASU,LBA,Size,Op,Timestamp`, LBA in 512-byte sectors, Size in bytes,
 * Timestamp in seconds. The SPC trace format allows optional fields after the fifth; they are ignored.
 */
const spc: LineParser = (line) => {
  const f = line.split(',');
  if (f.length < 5) return /^asu,/i.test(line) ? SKIP : { error: `expected 5 comma-separated fields (and optional ones after them), got ${f.length}` };
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
 * ts in nanoseconds, lba and size in 512-byte sectors. The fields after the process name are
 * read from the line's end, so a process name with spaces in it is still one field; the
 * md5 (32 hex digits) may be missing.
 */
const fiu: LineParser = (line) => {
  const f = line.trim().split(/\s+/);
  // Trailing MD5s (one per record, or one per 512 bytes in some of the published sets) are
  // dropped; then a process name with spaces in it still leaves the last five fields in place.
  let end = f.length;
  while (end > 8 && /^[0-9a-f]{32}$/i.test(f[end - 1])) end--;
  if (end < 8) return { error: `expected 9 whitespace-separated fields (ts pid process lba size op major minor md5), got ${f.length}` };
  if (end > 8 && end === f.length) return { error: `expected 9 whitespace-separated fields (ts pid process lba size op major minor md5), got ${f.length}, the last not an MD5 (32 hex digits): ${JSON.stringify(f[end - 1].slice(0, 40))}` };
  const [lbaField, sizeField, opField, major, minor] = f.slice(end - 5, end);
  const ns = nonNegative(num(f[0], 'ts'), 'ts');
  if (!/^\d+$/.test(f[1])) return { error: `pid is not a whole number: ${JSON.stringify(f[1].slice(0, 20))}` };
  const lba = nonNegative(num(lbaField, 'lba'), 'lba');
  const size = nonNegative(num(sizeField, 'size'), 'size');
  if (!/^\d+$/.test(major) || !/^\d+$/.test(minor)) return { error: 'major and minor must be whole numbers' };
  return build(typeof ns === 'number' ? ns / 1e9 : ns, opFromWord(opField), opField, typeof lba === 'number' ? lba * SECTOR : lba, typeof size === 'number' ? size * SECTOR : size, `${major}:${minor}`);
};

/**
 * blkparse's own default output (`blktrace -d /dev/sdX -o - | blkparse -i -`), what a Linux
 * user records a workload with: `maj,min cpu seq secs.ns pid action rwbs sector + count
 * [process]`, sectors of 512 bytes. A request shows up as several events on its way down
 * (Q queued, G, I, D issued, C completed; X split, M/F merged, A remapped from a
 * partition); each bio is counted once, at its Q, when the program issued it. Other events,
 * and the lines that are not events (blkparse's closing summary: "CPU0 (8,0):", "Total
 * (8,0):", "Throughput ...", "Events ..."), are skipped. rwbs: D discard (a trim), W write, R
 * read, F alone a flush.
 *
 * Until a disk shows its first Q, its requests are counted at the first of D or C it shows,
 * and only at that one: a trace filtered to one kind (`blkparse -a complete`, `-a issue`)
 * is then read whole, and an unfiltered one also counts the requests that were under way
 * when tracing began (their Q came before it) and show before the disk's first Q.
 */
function blkparse(): LineParser {
  /** Per disk: 'Q' once it showed a Q, else the one of D or C it is counted at. */
  const countedAt = new Map<string, 'Q' | 'D' | 'C'>();
  return (line) => {
    const f = line.trim().split(/\s+/);
    if (!/^\d+,\d+$/.test(f[0])) return SKIP;
    if (f.length < 7) return { error: `expected at least 7 whitespace-separated fields (dev cpu seq time pid action rwbs), got ${f.length}` };
    const action = f[5];
    if (action !== 'Q' && action !== 'D' && action !== 'C') return SKIP;
    const kind = countedAt.get(f[0]);
    if (action === 'Q') countedAt.set(f[0], 'Q');
    else if (kind === undefined) countedAt.set(f[0], action);
    else if (kind !== action) return SKIP;
    return blkparseEvent(f);
  };
}

function blkparseEvent(f: string[]): LineResult {
  const t = nonNegative(num(f[3], 'time'), 'time');
  const rwbs = f[6].toUpperCase();
  const volume = f[0].replace(',', ':');
  if (f[8] !== '+') {
    // A flush carries no sectors ("Q FWS [jbd2/sda1-8]").
    if (rwbs.includes('F')) return build(t, 'flush', rwbs, 0, 0, volume);
    return { error: `expected "sector + count" after ${JSON.stringify(f[6].slice(0, 8))}` };
  }
  const op: TraceOp = rwbs.includes('D') ? 'trim' : rwbs.includes('W') ? 'write' : rwbs.includes('R') ? 'read' : 'other';
  const sector = nonNegative(num(f[7], 'sector'), 'sector');
  const count = nonNegative(num(f[9], 'sector count'), 'sector count');
  return build(t, op, rwbs, typeof sector === 'number' ? sector * SECTOR : sector, typeof count === 'number' ? count * SECTOR : count, volume);
}

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

/** A parser per format for one file (blkparse's keeps state from line to line). */
export const LINE_PARSERS: Record<Exclude<TraceFormat, 'vscsi'>, () => LineParser> = { msr: () => msr, spc: () => spc, alibaba: () => alibaba, fiu: () => fiu, blkparse, headstart: () => headstart };
