/**
 * Load leveling of capture times: volumes that take a point every `every` and let the node
 * choose when (`schedule: {every, level: true}`) are spread over the interval so their
 * closes do not all hit the link at once.
 *
 * Why: an interval schedule is aligned to the clock, so every volume of a node with a 15 m
 * schedule closes at :00, :15, ... together. What each holds back until its close (all of
 * it under at-snapshot, the blocks still likely to be rewritten under predictive) then
 * needs the link at the same moment: the shared link's peak is the sum of the volumes'
 * bursts, and each commit waits behind the others'. Shifting each volume's points by a
 * fixed offset keeps its interval, so its recovery point is never older than before (the
 * node never delays a close to move to a new offset: see Node.applyLeveling), while the
 * bursts take turns.
 *
 * The plan is pure and deterministic: the heaviest unit first (bytes per point, from the
 * volume's recent points), each placed at the offset where its bursts add the least to the
 * busiest moment of the link, then to the overlap with the others. A burst is modelled as
 * the unit's bytes spread over the time the link needs for them (the cap in force), or
 * over an even share of the interval when no cap or no size is known yet; never shorter
 * than half that share.
 */

export interface LevelUnit {
  /** The volume, or the consistency group (one unit: its volumes close together). */
  readonly id: string;
  readonly everyMs: number;
  /** Bytes per point, from recent points; null when not known yet (a new volume). */
  readonly weightBytes: number | null;
}

export interface LevelPlan {
  /** Per unit: its points fall at offset + k * every (ms after the clock's marks). */
  readonly offsets: ReadonlyMap<string, number>;
  /** The modelled peak of the link's load under this plan, bytes/s (to compare plans). */
  readonly peakBytesPerSecond: number;
}

/** Offsets tried per interval: finer placement gains little, and the search stays small. */
const CANDIDATES = 120;
/** The modelled timeline's slots at most (its length is the intervals' common multiple). */
const MAX_SLOTS = 7200;

function gcd(a: number, b: number): number {
  while (b !== 0) [a, b] = [b, a % b];
  return a;
}

interface Model {
  readonly slotMs: number;
  readonly slots: number;
  readonly units: readonly { readonly id: string; readonly everyMs: number; readonly weight: number; readonly widthSlots: number }[];
}

function modelOf(units: readonly LevelUnit[], linkBytesPerSecond: number | null): Model {
  const known = units.map((u) => u.weightBytes).filter((w): w is number => w !== null && w > 0).sort((a, b) => a - b);
  // A unit not measured yet counts as a typical one (the median of the others), so it is
  // neither piled onto a busy moment nor given the whole interval.
  const typical = known.length > 0 ? known[Math.floor(known.length / 2)] : 1;
  let period = units[0].everyMs;
  for (const u of units) {
    const next = (period / gcd(period, u.everyMs)) * u.everyMs;
    period = next <= 86_400_000 ? next : Math.max(period, u.everyMs); // incommensurate: approximate (wraps)
  }
  const minEvery = Math.min(...units.map((u) => u.everyMs));
  // Slots no finer than the intervals allow, and no more than MAX_SLOTS over the period.
  const slotMs = Math.max(1, Math.floor(minEvery / CANDIDATES), Math.ceil(period / MAX_SLOTS));
  const slots = Math.max(1, Math.round(period / slotMs));
  return {
    slotMs,
    slots,
    units: units.map((u) => {
      const weight = u.weightBytes !== null && u.weightBytes > 0 ? u.weightBytes : typical;
      // A burst lasts as long as the link needs for it, and never less than half an even share
      // of the interval: a close also costs the commit's round trip and its fsyncs, and units
      // that fit anywhere are then spread out instead of packed side by side.
      const evenShareMs = minEvery / units.length;
      const drainMs = linkBytesPerSecond !== null && linkBytesPerSecond > 0 && known.length > 0 ? (weight / linkBytesPerSecond) * 1000 : evenShareMs;
      const widthSlots = Math.min(Math.max(1, Math.round(u.everyMs / slotMs)), Math.max(1, Math.round(Math.max(drainMs, evenShareMs / 2) / slotMs)));
      return { id: u.id, everyMs: u.everyMs, weight, widthSlots };
    }),
  };
}

/** The slots one unit's bursts cover at this offset (its closes over the whole period). */
function* slotsOf(model: Model, u: Model['units'][number], offsetMs: number): Generator<number> {
  const start = Math.round(offsetMs / model.slotMs);
  const periodMs = model.slots * model.slotMs;
  for (let at = 0; at < periodMs; at += u.everyMs) {
    const first = start + Math.round(at / model.slotMs);
    for (let t = 0; t < u.widthSlots; t++) yield (first + t) % model.slots;
  }
}

/** Bytes/s each slot of the period carries under these offsets. */
function loadOf(model: Model, offsets: ReadonlyMap<string, number>): Float64Array {
  const load = new Float64Array(model.slots);
  for (const u of model.units) {
    const rate = (u.weight / u.widthSlots / model.slotMs) * 1000;
    for (const s of slotsOf(model, u, offsets.get(u.id) ?? 0)) load[s] += rate;
  }
  return load;
}

const peakOf = (load: Float64Array): number => load.reduce((a, b) => Math.max(a, b), 0);

/**
 * The modelled peak of the link's load (bytes/s) for these offsets: to compare the plan in
 * force with a new one before moving any schedule.
 */
export function modelledPeak(units: readonly LevelUnit[], offsets: ReadonlyMap<string, number>, linkBytesPerSecond: number | null): number {
  if (units.length === 0) return 0;
  return peakOf(loadOf(modelOf(units, linkBytesPerSecond), offsets));
}

/** Plans the offsets of the leveled units that share a link. */
export function levelOffsets(units: readonly LevelUnit[], linkBytesPerSecond: number | null): LevelPlan {
  for (const u of units) {
    if (!(Number.isInteger(u.everyMs) && u.everyMs > 0)) throw new RangeError(`unit ${u.id}: every must be a positive whole number of ms, not ${u.everyMs}`);
  }
  const offsets = new Map<string, number>();
  if (units.length === 0) return { offsets, peakBytesPerSecond: 0 };
  const model = modelOf(units, linkBytesPerSecond);
  const load = new Float64Array(model.slots);
  const order = [...model.units].sort((a, b) => b.weight - a.weight || (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
  for (const u of order) {
    const rate = (u.weight / u.widthSlots / model.slotMs) * 1000;
    const positions = Math.max(1, Math.round(u.everyMs / model.slotMs));
    const tries = Math.min(positions, CANDIDATES);
    let best = { offsetMs: 0, peak: Infinity, overlap: Infinity };
    for (let i = 0; i < tries; i++) {
      const offsetMs = Math.floor((i * positions) / tries) * model.slotMs;
      let peak = 0;
      let overlap = 0;
      for (const s of slotsOf(model, u, offsetMs)) {
        peak = Math.max(peak, load[s] + rate);
        overlap += load[s];
      }
      // Peaks within a part in a million are equal (float sums): then the least overlap wins,
      // then the earliest offset (the heaviest unit stays on the clock's marks).
      const better = peak < best.peak * (1 - 1e-6) || (peak <= best.peak * (1 + 1e-6) && overlap < best.overlap * (1 - 1e-9));
      if (better) best = { offsetMs, peak, overlap };
    }
    offsets.set(u.id, best.offsetMs);
    for (const s of slotsOf(model, u, best.offsetMs)) load[s] += rate;
  }
  return { offsets, peakBytesPerSecond: peakOf(load) };
}
