import { describe, expect, it } from 'vitest';
import { seededRandom } from '../../../test/helpers/random';
import { StagedBlocks } from './staged-blocks';

describe('StagedBlocks', () => {
  it('agrees with a Map through puts, replacements and deletions, across growth and probe runs that wrap', () => {
    const random = seededRandom(7);
    const table = new StagedBlocks();
    const model = new Map<number, { gen: number; hash: bigint }>();
    // Blocks from a narrow range (many replacements and deletions hitting live entries) and
    // past 2^32 (both halves of the number feed the slot), deleted about a third as often as put.
    const pick = () => (random() < 0.8 ? Math.floor(random() * 5000) : 2 ** 32 + Math.floor(random() * 2 ** 40));
    for (let step = 0; step < 200_000; step++) {
      const block = pick();
      if (random() < 0.35) {
        expect(table.delete(block)).toBe(model.delete(block));
      } else {
        const gen = step + 1;
        const hash = BigInt(Math.floor(random() * 2 ** 32)) << 32n | BigInt(step);
        table.put(block, gen, hash);
        model.set(block, { gen, hash });
      }
      if (step % 20_000 === 0 || step === 199_999) {
        expect(table.size).toBe(model.size);
        for (const [b, v] of model) {
          expect(table.gen(b)).toBe(v.gen);
          expect(table.hash(b)).toBe(v.hash);
        }
        const seen = new Map<number, number>();
        table.forEach((b, gen) => void seen.set(b, gen));
        expect(seen).toEqual(new Map([...model].map(([b, v]) => [b, v.gen])));
      }
      // Absent blocks read as absent (deleted ones included: no stale copy is left behind).
      const other = pick();
      expect(table.gen(other)).toBe(model.get(other)?.gen);
    }
    expect(model.size).toBeGreaterThan(1000);
  });

  it('forEach stops when asked', () => {
    const table = new StagedBlocks();
    for (let b = 0; b < 100; b++) table.put(b, 1, 0n);
    let calls = 0;
    table.forEach(() => ++calls < 10);
    expect(calls).toBe(10);
  });
});
