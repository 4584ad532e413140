/**
 * Per-block planner state in flat typed arrays (open addressing, linear probing), so the
 * cost per tracked block is ~27 bytes instead of a JS object's hundreds. It holds the
 * blocks dirty in the open snapshot (which must be tracked exactly) plus, while room
 * remains, the recent history of clean blocks (their last write time and previous
 * inter-write gap), which only sharpens the rewrite model. When the table is full, the
 * clean blocks written longest ago are forgotten first; dirty blocks are never dropped,
 * the table grows instead. The engine's planner bounds the dirty blocks it tracks
 * (maxOpenBlocks): those written beyond it are UNTRACKED, kept only as history.
 */

export const EMPTY = -1;

/** Told about each clean block the table forgets, so its exposure can still be counted. */
export type Forget = (key: number, last: number, ctx: number, credited: number, count: number) => void;

/** Block state in the open snapshot. */
export const CLEAN = 0;
/** Written in the open snapshot, current version not sent. */
export const DIRTY = 1;
/** Written in the open snapshot, current version already pre-sent. */
export const SENT = 2;
/** Like SENT, but pre-sent as near-certain (P < pFree), outside the resend allowance. */
export const FREE_SENT = 3;
/**
 * Written in the open snapshot after it had maxOpenBlocks tracked dirty blocks: never
 * pre-sent (the engine ships it at the close), so the table may forget it like a clean
 * block; while it is here, a rewrite of it is known not to be a new dirty block.
 */
export const UNTRACKED = 4;

/** States whose entries are history only: the table may forget them when full. */
function forgettable(state: number): boolean {
  return state === CLEAN || state === UNTRACKED;
}

/** Bytes of table memory per slot (keys 8, last 8, gap 4, credited 4, count 2, recent 4, state 1, ctx 2). */
export const SLOT_BYTES = 33;

/** A block's history: what a restarted planner starts from (its state in the open snapshot is not). */
export const HISTORY = ['last', 'gap', 'credited', 'recent', 'count', 'ctx'] as const;
/** Every written block's key and history, in columns (see BlockTable.history). */
export type HistoryColumns = { keys: Float64Array } & { [K in (typeof HISTORY)[number]]: BlockTable[K] };

type Column = Float64Array | Float32Array | Uint16Array;
/** `from`'s entries at the first `n` of `slots`, in a new array of its type. */
function gather<T extends Column>(from: T, slots: Int32Array, n: number): T {
  const out = new (from.constructor as new (n: number) => T)(n);
  for (let j = 0; j < n; j++) out[j] = from[slots[j]];
  return out;
}

export class BlockTable {
  keys!: Float64Array;
  /** Time of the block's last write. */
  last!: Float64Array;
  /** The gap between its last two writes (0: written once as far as we know). */
  gap!: Float32Array;
  /** Age (since `last`) up to which its exposure was credited to the hazard model. */
  credited!: Float32Array;
  count!: Uint16Array;
  /** Writes seen, decayed with a half-life of one snapshot interval, as of `last`. */
  recent!: Float32Array;
  state!: Uint8Array;
  /** The block's rewrite-model context when its exposure was last credited (see hazard.ts). */
  ctx!: Uint16Array;
  size = 0;
  /** Bumped whenever entries move (a rehash): a slot index kept from before is void. */
  generation = 0;
  private mask = 0;

  constructor(
    slots: number,
    /** Slots the table may use for history before it forgets old clean blocks. */
    readonly maxSlots: number,
  ) {
    this.alloc(slots);
  }

  get capacity(): number {
    return this.keys.length;
  }

  get memoryBytes(): number {
    return this.capacity * SLOT_BYTES;
  }

  private alloc(slots: number): void {
    this.keys = new Float64Array(slots).fill(EMPTY);
    this.last = new Float64Array(slots);
    this.gap = new Float32Array(slots);
    this.credited = new Float32Array(slots);
    this.count = new Uint16Array(slots);
    this.recent = new Float32Array(slots);
    this.state = new Uint8Array(slots);
    this.ctx = new Uint16Array(slots);
    this.mask = slots - 1;
    this.size = 0;
  }

  private hash(key: number): number {
    // Block numbers are dense and sequential: mix them so runs do not cluster.
    const lo = key >>> 0;
    const hi = (key / 4294967296) >>> 0;
    return (Math.imul(lo ^ Math.imul(hi, 0x27d4eb2d), 0x9e3779b1) >>> 0) & this.mask;
  }

  /** The slot of `key`, or -1. */
  find(key: number): number {
    let i = this.hash(key);
    for (;;) {
      const k = this.keys[i];
      if (k === key) return i;
      if (k === EMPTY) return -1;
      i = (i + 1) & this.mask;
    }
  }

  /** The slot of `key`, inserting a fresh clean entry if absent. `onForget` sees dropped slots. */
  upsert(key: number, onForget: Forget): number {
    let i = this.find(key);
    if (i >= 0) return i;
    if ((this.size + 1) * 4 > this.capacity * 3) {
      this.makeRoom(onForget);
    }
    i = this.hash(key);
    while (this.keys[i] !== EMPTY) i = (i + 1) & this.mask;
    this.keys[i] = key;
    this.last[i] = 0;
    this.gap[i] = 0;
    this.credited[i] = 0;
    this.count[i] = 0;
    this.recent[i] = 0;
    this.state[i] = CLEAN;
    this.ctx[i] = 0;
    this.size++;
    return i;
  }

  /** Every block written at least once, with its history (for a later planner's restore). */
  history(): HistoryColumns {
    const slots = new Int32Array(this.size);
    let n = 0;
    for (let i = 0; i < this.capacity; i++) if (this.keys[i] !== EMPTY && this.count[i] > 0) slots[n++] = i;
    const out = { keys: gather(this.keys, slots, n) } as HistoryColumns;
    for (const c of HISTORY) (out[c] as Column) = gather(this[c], slots, n);
    return out;
  }

  /** Takes in saved history as clean blocks; newest first if it may not all fit, so the oldest go. */
  restoreHistory(h: HistoryColumns): void {
    const order = Array.from(h.keys.keys());
    if (order.length * 4 > this.maxSlots * 3) order.sort((x, y) => h.last[y] - h.last[x]);
    for (const j of order) {
      const i = this.upsert(h.keys[j], () => {});
      for (const c of HISTORY) this[c][i] = h[c][j];
    }
  }

  /** Grows while under maxSlots; at the cap forgets the older half of the clean (and untracked) history. */
  private makeRoom(onForget: Forget): void {
    let dirty = 0;
    for (let i = 0; i < this.capacity; i++) if (this.keys[i] !== EMPTY && !forgettable(this.state[i])) dirty++;
    if (this.capacity * 2 <= this.maxSlots || (dirty + 1) * 2 > this.capacity) {
      this.rehash(this.capacity * 2, -Infinity, onForget);
      return;
    }
    // Median last-write time of forgettable entries, from a strided sample.
    const sample: number[] = [];
    const stride = Math.max(1, Math.floor(this.capacity / 4096));
    for (let i = 0; i < this.capacity; i += stride) if (this.keys[i] !== EMPTY && forgettable(this.state[i])) sample.push(this.last[i]);
    sample.sort((a, b) => a - b);
    const cut = sample.length > 0 ? sample[Math.floor(sample.length / 2)] : -Infinity;
    this.rehash(this.capacity, cut, onForget);
  }

  /** Rebuilds into `slots` slots, dropping forgettable entries last written at or before `forgetUpTo`. */
  private rehash(slots: number, forgetUpTo: number, onForget: Forget): void {
    const old = { keys: this.keys, last: this.last, gap: this.gap, credited: this.credited, count: this.count, recent: this.recent, state: this.state, ctx: this.ctx };
    this.alloc(slots);
    this.generation++;
    for (let j = 0; j < old.keys.length; j++) {
      const key = old.keys[j];
      if (key === EMPTY) continue;
      if (forgettable(old.state[j]) && old.last[j] <= forgetUpTo) {
        onForget(key, old.last[j], old.ctx[j], old.credited[j], old.count[j]);
        continue;
      }
      let i = this.hash(key);
      while (this.keys[i] !== EMPTY) i = (i + 1) & this.mask;
      this.keys[i] = key;
      this.last[i] = old.last[j];
      this.gap[i] = old.gap[j];
      this.credited[i] = old.credited[j];
      this.count[i] = old.count[j];
      this.recent[i] = old.recent[j];
      this.state[i] = old.state[j];
      this.ctx[i] = old.ctx[j];
      this.size++;
    }
  }
}
