/**
 * What a volume's planner has learnt of its workload, as bytes that a later planner of the
 * same volume starts from: after a restart (or a crash) the engine would otherwise plan
 * with a cold model for hours (the model's half-life is 6 h), with the allowance gain back
 * at 1 and the link's throughput unknown until it has been measured again.
 *
 * Kept: the rewrite model's counts and exposure, the allowance gain, the link throughput,
 * the forecast growth rate and the calibration sums. Not kept: per-block history (up to
 * 33 MiB for a TiB volume; blocks start again as "written once") and the per-region heat
 * map (regions start as "medium" until their writes say otherwise).
 *
 * Layout, little-endian: "HSPL", u32 version, u32 block size, u32 cells, then f64 fields
 * (decayedAt, NaN when never aged; gain; B, NaN when unknown; growth rate; calibration
 * expected, actual), then the cells' events and exposure (f64 each), then an FNV-1a 32-bit
 * checksum of everything before it. Any mismatch is refused with PLANNER_BAD_STATE: the
 * state is an optimisation, and a caller that cannot use it starts cold.
 */
import { HeadstartError } from '@headstart/errors';
import { CELLS } from './hazard';

const MAGIC = 0x4c505348; // "HSPL" read as a little-endian u32
const VERSION = 1;
const HEADER = 16;
const FIELDS = 6;

export interface Learnt {
  readonly blockSize: number;
  readonly decayedAt: number | null;
  readonly budgetGain: number;
  readonly bytesPerSecond: number | null;
  readonly newDirtyRate: number;
  readonly calExpected: number;
  readonly calActual: number;
  readonly events: Float64Array;
  readonly exposure: Float64Array;
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

export function encodeLearnt(l: Learnt): Uint8Array {
  const size = HEADER + 8 * FIELDS + 16 * CELLS + 4;
  const buf = new ArrayBuffer(size);
  const view = new DataView(buf);
  view.setUint32(0, MAGIC, true);
  view.setUint32(4, VERSION, true);
  view.setUint32(8, l.blockSize, true);
  view.setUint32(12, CELLS, true);
  const fields = [l.decayedAt ?? NaN, l.budgetGain, l.bytesPerSecond ?? NaN, l.newDirtyRate, l.calExpected, l.calActual];
  fields.forEach((v, i) => view.setFloat64(HEADER + 8 * i, v, true));
  let at = HEADER + 8 * FIELDS;
  for (const arr of [l.events, l.exposure]) {
    for (let i = 0; i < CELLS; i++, at += 8) view.setFloat64(at, arr[i], true);
  }
  const bytes = new Uint8Array(buf);
  view.setUint32(at, fnv1a(bytes.subarray(0, at)), true);
  return bytes;
}

/** Decodes and checks saved state for a planner of `blockSize`-byte blocks. */
export function decodeLearnt(bytes: Uint8Array, blockSize: number): Learnt {
  if (!(bytes instanceof Uint8Array)) badState('not a byte array');
  const size = HEADER + 8 * FIELDS + 16 * CELLS + 4;
  if (bytes.length < HEADER) badState(`${bytes.length} bytes, too short for a header`);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (view.getUint32(0, true) !== MAGIC) badState('not a headstart planner state (wrong magic)');
  const version = view.getUint32(4, true);
  if (version !== VERSION) badState(`version ${version}, this planner reads version ${VERSION}`);
  const bs = view.getUint32(8, true);
  if (bs !== blockSize) badState(`saved for ${bs}-byte blocks, the volume has ${blockSize}-byte blocks`);
  const cells = view.getUint32(12, true);
  if (cells !== CELLS) badState(`a model of ${cells} cells, this planner has ${CELLS}`);
  if (bytes.length !== size) badState(`${bytes.length} bytes, expected ${size} (truncated or padded)`);
  if (view.getUint32(size - 4, true) !== fnv1a(bytes.subarray(0, size - 4))) badState('checksum mismatch (damaged)');
  const f = (i: number) => view.getFloat64(HEADER + 8 * i, true);
  const [decayedAt, budgetGain, B, newDirtyRate, calExpected, calActual] = [f(0), f(1), f(2), f(3), f(4), f(5)];
  const events = new Float64Array(CELLS);
  const exposure = new Float64Array(CELLS);
  let at = HEADER + 8 * FIELDS;
  for (const arr of [events, exposure]) {
    for (let i = 0; i < CELLS; i++, at += 8) {
      const v = view.getFloat64(at, true);
      if (!(v >= 0) || !Number.isFinite(v)) badState(`model cell ${i} holds ${v}`);
      arr[i] = v;
    }
  }
  if (!(budgetGain > 0) || !Number.isFinite(budgetGain)) badState(`allowance gain ${budgetGain}`);
  if (!Number.isNaN(B) && !(B > 0 && Number.isFinite(B))) badState(`link throughput ${B}`);
  if (!Number.isNaN(decayedAt) && !Number.isFinite(decayedAt)) badState(`model time ${decayedAt}`);
  for (const [name, v] of [['growth rate', newDirtyRate], ['calibration', calExpected], ['calibration', calActual]] as const) {
    if (!(v >= 0) || !Number.isFinite(v)) badState(`${name} ${v}`);
  }
  return {
    blockSize: bs,
    decayedAt: Number.isNaN(decayedAt) ? null : decayedAt,
    budgetGain,
    bytesPerSecond: Number.isNaN(B) ? null : B,
    newDirtyRate,
    calExpected,
    calActual,
    events,
    exposure,
  };
}
