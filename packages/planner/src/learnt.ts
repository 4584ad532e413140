/**
 * What a volume's planner has learnt of its workload, as bytes that a later planner of the
 * same volume starts from: after a restart (or a crash) the engine would otherwise plan
 * with a cold model for hours (the model's half-life is 6 h), with no block's rhythm or
 * recent writes, no region's heat, the allowance gain back at 1 and the link's throughput
 * unknown until measured again. Measured on the shared traces' full sweep with a restart
 * every hour (`npm run bench:traces -- --restart-every 3600 [--restart-cold]`): never
 * restarted, 29 of 45 runs on target; restarted from this state, 29 (redundancy within
 * 0.0012, lag within 3 %); restarted cold, 26 (hp-ajw disk 0 at 15 min / 2x: 1.0221
 * redundancy against 1.0029). With the model alone kept (not the blocks' and regions'
 * history), that run went to 1.030: per-block rhythm is what the planner knows that disk by.
 *
 * Kept: the rewrite model's counts and exposure; every tracked block's last write, previous
 * gap, recent writes, write count, context and credited exposure; every written region's
 * heat; the allowance gain, the link throughput, the growth forecast, the calibration sums,
 * and the planner time it was saved at. Not kept: which blocks are dirty or pre-sent (the
 * engine re-reads the open point's writes from its write log, and sends them anew).
 *
 * Layout, little-endian: "HSPL", u32 version, u32 block size, u32 model cells, u32 blocks,
 * u32 regions, u32 region shift, u32 reserved; f64 fields (volume size, saved at, decayedAt,
 * creditedAt, gain, B, growth rate, calibration expected and actual; NaN for "none"); the
 * model's events and exposure (f64 each); per block, in columns: key f64, last f64, gap
 * f32, credited f32, recent f32, count u16, context u16; per region, in columns: index f64,
 * last f64, writes f32, rewrites f32; an FNV-1a 32-bit checksum of everything before it.
 * Any mismatch is refused with PLANNER_BAD_STATE: the state is an optimisation, and a
 * caller that cannot use it starts cold.
 */
import { HeadstartError } from '@headstart/errors';
import type { HistoryColumns } from './block-table';
import { CELLS, CONTEXTS } from './hazard';

const MAGIC = 0x4c505348; // "HSPL" read as a little-endian u32
const VERSION = 1;
const HEADER = 32;
const FIELDS = 9;
const BLOCK_BYTES = 8 + 8 + 4 + 4 + 4 + 2 + 2;
const REGION_BYTES = 8 + 8 + 4 + 4;

export interface LearntRegions {
  readonly index: Float64Array;
  readonly last: Float64Array;
  readonly writes: Float32Array;
  readonly rewrites: Float32Array;
}

export interface Learnt {
  readonly blockSize: number;
  readonly volumeSize: number;
  readonly regionShift: number;
  /** Planner time of the export: writes up to it are in what it learnt. */
  readonly savedAt: number;
  readonly decayedAt: number | null;
  /** When every tracked block's exposure was last credited, or null. */
  readonly creditedAt: number | null;
  readonly budgetGain: number;
  readonly bytesPerSecond: number | null;
  readonly newDirtyRate: number;
  readonly calExpected: number;
  readonly calActual: number;
  readonly events: Float64Array;
  readonly exposure: Float64Array;
  readonly blocks: HistoryColumns;
  readonly regions: LearntRegions;
}

function fnv1a(bytes: Uint8Array): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < bytes.length; i++) {
    h ^= bytes[i];
    h = Math.imul(h, 0x01000193);
  }
  return h >>> 0;
}

function badState(message: string): never {
  throw new HeadstartError('PLANNER_BAD_STATE', `saved planner state: ${message}`);
}

const sizeOf = (blocks: number, regions: number) => HEADER + 8 * FIELDS + 16 * CELLS + BLOCK_BYTES * blocks + REGION_BYTES * regions + 4;

type Column = Float64Array | Float32Array | Uint16Array;
const WIDTH = (c: Column) => (c instanceof Float64Array ? 8 : c instanceof Float32Array ? 4 : 2);

export function encodeLearnt(l: Learnt): Uint8Array {
  const nb = l.blocks.keys.length;
  const nr = l.regions.index.length;
  const bytes = new Uint8Array(sizeOf(nb, nr));
  const view = new DataView(bytes.buffer);
  [MAGIC, VERSION, l.blockSize, CELLS, nb, nr, l.regionShift, 0].forEach((v, i) => view.setUint32(4 * i, v, true));
  const fields = [l.volumeSize, l.savedAt, l.decayedAt ?? NaN, l.creditedAt ?? NaN, l.budgetGain, l.bytesPerSecond ?? NaN, l.newDirtyRate, l.calExpected, l.calActual];
  fields.forEach((v, i) => view.setFloat64(HEADER + 8 * i, v, true));
  let at = HEADER + 8 * FIELDS;
  const b = l.blocks;
  const r = l.regions;
  for (const column of [l.events, l.exposure, b.keys, b.last, b.gap, b.credited, b.recent, b.count, b.ctx, r.index, r.last, r.writes, r.rewrites] as Column[]) {
    const w = WIDTH(column);
    for (let i = 0; i < column.length; i++, at += w) {
      if (w === 8) view.setFloat64(at, column[i], true);
      else if (w === 4) view.setFloat32(at, column[i], true);
      else view.setUint16(at, column[i], true);
    }
  }
  view.setUint32(at, fnv1a(bytes.subarray(0, at)), true);
  return bytes;
}

/** Decodes and checks saved state for a planner of this geometry. */
export function decodeLearnt(bytes: Uint8Array, geometry: { blockSize: number; volumeSize: number; regionShift: number }): Learnt {
  if (!(bytes instanceof Uint8Array)) badState('not a byte array');
  if (bytes.length < HEADER) badState(`${bytes.length} bytes, too short for a header`);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const u = (i: number) => view.getUint32(4 * i, true);
  if (u(0) !== MAGIC) badState('not a headstart planner state (wrong magic)');
  if (u(1) !== VERSION) badState(`version ${u(1)}, this planner reads version ${VERSION}`);
  if (u(2) !== geometry.blockSize) badState(`saved for ${u(2)}-byte blocks, the volume has ${geometry.blockSize}-byte blocks`);
  if (u(3) !== CELLS) badState(`a model of ${u(3)} cells, this planner has ${CELLS}`);
  const nb = u(4);
  const nr = u(5);
  if (u(6) !== geometry.regionShift) badState(`regions of 2^${u(6)} bytes, this planner's are 2^${geometry.regionShift}`);
  const size = sizeOf(nb, nr);
  if (bytes.length !== size) badState(`${bytes.length} bytes, expected ${size} (truncated or padded)`);
  if (view.getUint32(size - 4, true) !== fnv1a(bytes.subarray(0, size - 4))) badState('checksum mismatch (damaged)');
  const f = (i: number) => view.getFloat64(HEADER + 8 * i, true);
  const [volumeSize, savedAt, decayedAt, creditedAt, budgetGain, B, newDirtyRate, calExpected, calActual] = Array.from({ length: FIELDS }, (_, i) => f(i));
  if (volumeSize !== geometry.volumeSize) badState(`saved for a volume of ${volumeSize} bytes, this one has ${geometry.volumeSize}`);
  if (!Number.isFinite(savedAt)) badState(`saved at ${savedAt}`);
  if (!(budgetGain > 0) || !Number.isFinite(budgetGain)) badState(`allowance gain ${budgetGain}`);
  if (!Number.isNaN(B) && !(B > 0 && Number.isFinite(B))) badState(`link throughput ${B}`);
  if (!Number.isNaN(decayedAt) && !Number.isFinite(decayedAt)) badState(`model time ${decayedAt}`);
  if (!Number.isNaN(creditedAt) && !Number.isFinite(creditedAt)) badState(`credit time ${creditedAt}`);
  for (const [name, v] of [['growth rate', newDirtyRate], ['calibration', calExpected], ['calibration', calActual]] as const) {
    if (!(v >= 0) || !Number.isFinite(v)) badState(`${name} ${v}`);
  }
  let at = HEADER + 8 * FIELDS;
  const read = <T extends Column>(column: T, ok: (v: number) => boolean, what: string): T => {
    const w = WIDTH(column);
    for (let i = 0; i < column.length; i++, at += w) {
      const v = w === 8 ? view.getFloat64(at, true) : w === 4 ? view.getFloat32(at, true) : view.getUint16(at, true);
      if (!ok(v)) badState(`${what} ${i} holds ${v}`);
      column[i] = v;
    }
    return column;
  };
  const nonNegative = (v: number) => v >= 0 && Number.isFinite(v);
  const blocksInVolume = geometry.volumeSize / geometry.blockSize;
  const regionsInVolume = Math.ceil(geometry.volumeSize / 2 ** geometry.regionShift);
  const events = read(new Float64Array(CELLS), nonNegative, 'model cell');
  const exposure = read(new Float64Array(CELLS), nonNegative, 'model cell');
  const blocks: HistoryColumns = {
    keys: read(new Float64Array(nb), (v) => Number.isInteger(v) && v >= 0 && v < blocksInVolume, 'block'),
    last: read(new Float64Array(nb), (v) => Number.isFinite(v) && v <= savedAt, 'block write time'),
    gap: read(new Float32Array(nb), nonNegative, 'block gap'),
    credited: read(new Float32Array(nb), nonNegative, 'block exposure'),
    recent: read(new Float32Array(nb), nonNegative, 'block recent writes'),
    count: read(new Uint16Array(nb), (v) => v > 0, 'block write count'),
    ctx: read(new Uint16Array(nb), (v) => v < CONTEXTS, 'block context'),
  };
  const regions: LearntRegions = {
    index: read(new Float64Array(nr), (v) => Number.isInteger(v) && v >= 0 && v < regionsInVolume, 'region'),
    last: read(new Float64Array(nr), (v) => Number.isFinite(v) && v <= savedAt, 'region write time'),
    writes: read(new Float32Array(nr), nonNegative, 'region writes'),
    rewrites: read(new Float32Array(nr), nonNegative, 'region rewrites'),
  };
  return {
    blockSize: geometry.blockSize,
    volumeSize,
    regionShift: geometry.regionShift,
    savedAt,
    decayedAt: Number.isNaN(decayedAt) ? null : decayedAt,
    creditedAt: Number.isNaN(creditedAt) ? null : creditedAt,
    budgetGain,
    bytesPerSecond: Number.isNaN(B) ? null : B,
    newDirtyRate,
    calExpected,
    calActual,
    events,
    exposure,
    blocks,
    regions,
  };
}
