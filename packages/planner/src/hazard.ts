/**
 * The rewrite model: an empirical rewrite hazard learnt online from the volume's own
 * history, by a block's age (time since its last write) and by its rhythm (the gap between
 * its last two writes). `P(rewrite within H | age a, rhythm c) = 1 - exp(-(Λc(a+H) - Λc(a)))`
 * where Λc is the cumulative hazard, estimated per cell as rewrites observed / block-seconds
 * at risk (exposure), decayed over time so the model follows a changing workload.
 *
 * Why not a Poisson rate: the chance of a rewrite depends strongly on age (a block written a
 * second ago is likely mid-burst; one idle for an hour is probably done), which a constant
 * rate cannot express, so a Poisson model is badly calibrated over long horizons. Why the
 * previous gap: periodic writers (checkpoints, a write-ahead log wrapping round its
 * segments, journal commits) rewrite a block about one period after the last time; the
 * hazard of blocks whose last gap was ~T peaks at age ~T, and conditioning on that gap lets
 * the model learn each rhythm from the data without naming it.
 *
 * Cells: ages in half-octaves from 1/16 s up to ~24 days; rhythms in octaves of the previous
 * gap (context 0 = written once as far as we know), each split by the region's rewrite share
 * and by the block's recent writes. Sparse cells shrink towards their rhythm's, which
 * shrink towards the age-only marginal, which shrinks towards a cautious prior (hazard ~
 * 1/age).
 */

/** Age buckets: 0 = [0, 1/16 s), k >= 1 = [2^((k-1)/2 - 4), 2^(k/2 - 4)). */
export const AGE_BUCKETS = 51;
/** Rhythm classes: 0 = no previous gap, 1.. = octave of the previous gap from 1/16 s. */
export const RHYTHMS = 28;
/**
 * Region classes, from the region's decayed share of writes that were rewrites of a block
 * it had already written: 0 (< 2 %: a log or a one-pass copy moving through), 1 (< 20 %),
 * 2 (< 60 %), 3 (a hot spot). A block written for the first time has no rhythm of its own;
 * its region's history is the best evidence of whether it will be written again.
 */
export const NEIGHBOURHOODS = 4;
/**
 * Recent-write classes of a block: its writes decayed with a half-life of one snapshot
 * interval, at most 1.5 (about one write lately), up to 4, more. The last gap says when a
 * block's next write is due; how often it was written lately says how likely there is one
 * at all. Measured (\`npm run bench:traces\`, full sweep): 28 -> 30 of 45 runs on target;
 * the issue's plain reference planner, whose P is a per-block decayed write count, had
 * ranked hp-ajw disk 0's blocks better than the rhythm model alone (redundancy 1.0052
 * against 1.0093 at the same lag, 15 min / 2x, no allowance).
 */
export const COUNT_CLASSES = 3;
export const CONTEXTS = RHYTHMS * NEIGHBOURHOODS * COUNT_CLASSES;
/** Cells of the model: one per context and age bucket. */
export const CELLS = CONTEXTS * AGE_BUCKETS;
const MIN_AGE = 1 / 16;

const EDGE = new Float64Array(AGE_BUCKETS + 1);
for (let k = 1; k <= AGE_BUCKETS; k++) EDGE[k] = 2 ** ((k - 1) / 2 - 4);
/** The last bucket is open-ended; give it a nominal width for the prior. */
const WIDTH = new Float64Array(AGE_BUCKETS);
for (let k = 0; k < AGE_BUCKETS; k++) WIDTH[k] = k === AGE_BUCKETS - 1 ? EDGE[k] : EDGE[k + 1] - EDGE[k];

/** A representative age of each bucket (geometric middle). */
const MID = new Float64Array(AGE_BUCKETS);
for (let k = 0; k < AGE_BUCKETS; k++) MID[k] = k === 0 ? MIN_AGE / 2 : k === AGE_BUCKETS - 1 ? EDGE[k] * Math.SQRT2 : Math.sqrt(EDGE[k] * EDGE[k + 1]);

/**
 * The bucket of an age: 1 + floor(2 (log2(age) + 4)), read off the float's bits (the
 * planner asks for every tracked block each minute: a log2 was a sixth of a long trace's
 * evaluation). floor(log2(age)) is the exponent; the half octave is whether the mantissa
 * (in [1, 2)) is at least sqrt(2).
 */
const BITS = new Float64Array(1);
const WORDS = new Uint32Array(BITS.buffer);
const HIGH = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1 ? 1 : 0;

export function ageBucket(age: number): number {
  if (!(age >= MIN_AGE)) return 0;
  BITS[0] = age;
  const high = WORDS[HIGH];
  const exponent = ((high >>> 20) & 0x7ff) - 1023;
  WORDS[HIGH] = (high & 0x000fffff) | 0x3ff00000;
  const k = 1 + 2 * (exponent + 4) + (BITS[0] >= Math.SQRT2 ? 1 : 0);
  return k >= AGE_BUCKETS ? AGE_BUCKETS - 1 : k;
}

/**
 * The context of a block: its rhythm (previous gap), its region's rewrite share and its
 * recent writes (decayed count, see COUNT_CLASSES).
 */
export function contextOf(gap: number, regionRewriteShare: number, recentWrites = 1): number {
  let g: number;
  if (gap <= 0) g = 0;
  else if (gap < MIN_AGE) g = 1;
  else {
    g = 1 + Math.floor(Math.log2(gap) + 4);
    if (g >= RHYTHMS) g = RHYTHMS - 1;
  }
  return withRhythm(g, regionRewriteShare, recentWrites);
}

/** The top of the lowest recent-write class (about one write lately). */
export const COUNT_LOW = 1.5;

function withRhythm(g: number, regionRewriteShare: number, recentWrites: number): number {
  const q = regionRewriteShare;
  const r = q < 0.02 ? 0 : q < 0.2 ? 1 : q < 0.6 ? 2 : 3;
  const n = recentWrites <= COUNT_LOW ? 0 : recentWrites <= 4 ? 1 : 2;
  return (g * NEIGHBOURHOODS + r) * COUNT_CLASSES + n;
}

/** Context `c` with its rhythm kept and its region share and recent writes as given now. */
export function withNeighbourhood(c: number, regionRewriteShare: number, recentWrites: number): number {
  return withRhythm(Math.floor(c / (NEIGHBOURHOODS * COUNT_CLASSES)), regionRewriteShare, recentWrites);
}

export interface HazardOptions {
  /** Half-life (s) of what the model has learnt. */
  readonly halfLife: number;
  /** Prior strength of a cell, in blocks' worth of exposure over its bucket. */
  readonly cellPrior: number;
}

export class HazardModel {
  private readonly events = new Float64Array(CELLS);
  private readonly exposure = new Float64Array(CELLS);
  private readonly hazard = new Float64Array(CELLS);
  /** Cumulative hazard at each bucket's lower edge. */
  private readonly cumulative = new Float64Array(CELLS);
  private decayedAt: number | null = null;
  private stale = true;

  constructor(private readonly options: HazardOptions) {}

  get memoryBytes(): number {
    return 4 * this.events.byteLength;
  }

  /** Counts `from`..`to` seconds of age at risk for a block of context `c`. */
  expose(c: number, from: number, to: number): void {
    if (!(to > from)) return;
    const base = c * AGE_BUCKETS;
    let k = ageBucket(from);
    let a = from;
    while (a < to) {
      const end = k === AGE_BUCKETS - 1 ? Infinity : EDGE[k + 1];
      const b = end < to ? end : to;
      this.exposure[base + k] += b - a;
      a = b;
      k++;
    }
    this.stale = true;
  }

  /** A block of context `c` was rewritten at age `age` (expose it up to `age` first). */
  event(c: number, age: number): void {
    this.events[c * AGE_BUCKETS + ageBucket(age)] += 1;
    this.stale = true;
  }

  /** Ages what was learnt: a workload's past counts less the longer ago it was. */
  decay(now: number): void {
    if (this.decayedAt === null) {
      this.decayedAt = now;
      return;
    }
    const dt = now - this.decayedAt;
    if (dt < 0) {
      // A clock behind the one the model was saved under (restored state, a replay's
      // synthetic clock): no time has passed, count from here.
      this.decayedAt = now;
      return;
    }
    if (dt === 0) return;
    this.decayedAt = now;
    const f = Math.exp((-dt * Math.LN2) / this.options.halfLife);
    for (let i = 0; i < this.events.length; i++) {
      this.events[i] *= f;
      this.exposure[i] *= f;
    }
    this.stale = true;
  }

  /** What it has learnt: rewrite counts and exposure per cell, and when they were last aged. */
  counts(): { events: Float64Array; exposure: Float64Array; decayedAt: number | null } {
    return { events: this.events.slice(), exposure: this.exposure.slice(), decayedAt: this.decayedAt };
  }

  /** Starts from what an earlier model learnt (arrays of `CELLS` entries, checked by the caller). */
  restore(events: Float64Array, exposure: Float64Array, decayedAt: number | null): void {
    this.events.set(events);
    this.exposure.set(exposure);
    this.decayedAt = decayedAt;
    this.stale = true;
  }

  private refresh(): void {
    const prior = this.options.cellPrior;
    let prev = 0;
    for (let k = 0; k < AGE_BUCKETS; k++) {
      let ev = 0;
      let ex = 0;
      for (let c = 0; c < CONTEXTS; c++) {
        ev += this.events[c * AGE_BUCKETS + k];
        ex += this.exposure[c * AGE_BUCKETS + k];
      }
      // Where the data is thin (ages the volume has not lived through yet), continue the
      // younger bucket's hazard as a power law h ~ 1/age: rewrites thin out with age on
      // real volumes, and 1/age is the cautious end of that (a block is then about as
      // likely as not to be rewritten within its own age again, times the learnt rate).
      // Bucket 0 starts from "rewritten within its own age for sure".
      const extrapolated = k === 0 ? 1 / MID[0] : (prev * MID[k - 1]) / MID[k];
      const w0 = 2 * WIDTH[k];
      const marginal = (ev + w0 * extrapolated) / (ex + w0);
      prev = marginal;
      // Three levels of shrinkage: a rhythm's cell towards the age marginal, a
      // neighbourhood's towards its rhythm's, a write-count class's towards its
      // neighbourhood's, so sparse cells borrow from their nearest population.
      const w = prior * WIDTH[k];
      const Q = COUNT_CLASSES;
      for (let g = 0; g < RHYTHMS; g++) {
        let gev = 0;
        let gex = 0;
        for (let c = g * NEIGHBOURHOODS * Q; c < (g + 1) * NEIGHBOURHOODS * Q; c++) {
          gev += this.events[c * AGE_BUCKETS + k];
          gex += this.exposure[c * AGE_BUCKETS + k];
        }
        const rhythm = (gev + w * marginal) / (gex + w);
        for (let r = 0; r < NEIGHBOURHOODS; r++) {
          const base = (g * NEIGHBOURHOODS + r) * Q;
          let rev = 0;
          let rex = 0;
          for (let n = 0; n < Q; n++) {
            rev += this.events[(base + n) * AGE_BUCKETS + k];
            rex += this.exposure[(base + n) * AGE_BUCKETS + k];
          }
          const hood = (rev + w * rhythm) / (rex + w);
          for (let n = 0; n < Q; n++) {
            const i = (base + n) * AGE_BUCKETS + k;
            this.hazard[i] = (this.events[i] + w * hood) / (this.exposure[i] + w);
          }
        }
      }
    }
    for (let c = 0; c < CONTEXTS; c++) {
      let acc = 0;
      for (let k = 0; k < AGE_BUCKETS; k++) {
        const i = c * AGE_BUCKETS + k;
        this.cumulative[i] = acc;
        acc += this.hazard[i] * WIDTH[k];
      }
    }
    this.stale = false;
  }

  private lambda(c: number, age: number): number {
    const k = ageBucket(age);
    const i = c * AGE_BUCKETS + k;
    return this.cumulative[i] + this.hazard[i] * (age - EDGE[k]);
  }

  /** P(a block of context `c`, now `age` s since its last write, is rewritten within `horizon` s). */
  probability(c: number, age: number, horizon: number): number {
    if (this.stale) this.refresh();
    if (!(horizon > 0)) return 0;
    if (horizon === Infinity) return 1;
    const d = this.lambda(c, age + horizon) - this.lambda(c, age);
    return 1 - Math.exp(-d);
  }
}
