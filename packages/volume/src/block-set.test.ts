import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { BlockSet } from './block-set';

describe('BlockSet', () => {
  it('behaves like a Set of numbers, iterating in ascending order', () => {
    fc.assert(
      fc.property(fc.array(fc.oneof(fc.nat(70_000), fc.nat(2 ** 40)), { maxLength: 3000 }), (blocks) => {
        const set = new BlockSet();
        const model = new Set<number>();
        for (const b of blocks) expect(set.add(b)).toBe(!model.has(b) && (model.add(b), true));
        expect(set.size).toBe(model.size);
        expect([...set]).toEqual([...model].sort((a, b) => a - b));
        for (const b of blocks.slice(0, 50)) expect(set.has(b)).toBe(true);
        expect(set.has(2 ** 41)).toBe(false);
      }),
      { numRuns: 50 },
    );
  });

  it('switches a dense container to a bitmap without losing members', () => {
    const set = new BlockSet();
    for (let b = 0; b < 10_000; b += 2) set.add(b);
    expect(set.size).toBe(5000);
    expect(set.has(9998)).toBe(true);
    expect(set.has(9999)).toBe(false);
    expect([...set].length).toBe(5000);
    expect(set.byteSize()).toBeLessThan(9000);
  });

  it('reports runs of consecutive blocks', () => {
    const set = BlockSet.of([1, 2, 3, 7, 9, 10]);
    expect([...set.runs()]).toEqual([[1, 3], [7, 1], [9, 2]]);
    expect([...set.runs(2)]).toEqual([[1, 2], [3, 1], [7, 1], [9, 2]]);
  });

  it('stays small when 1% of a TiB is dirty', () => {
    const blocks = 2 ** 28; // 1 TiB of 4 KiB blocks
    const set = new BlockSet();
    const step = 100;
    for (let b = 0; b < blocks; b += step) set.add(b);
    // 2.7 M members at 2 bytes each in array containers: ~5.4 MB plus growth slack, against 32 MiB for a bitmap.
    expect(set.byteSize()).toBeLessThan(12 * 1024 * 1024);
  });

  it('addRange equals adding each block, across containers, arrays and bitmaps', () => {
    const op = fc.record({ first: fc.oneof(fc.nat(200_000), fc.constantFrom(65_530, 131_070)), count: fc.oneof(fc.integer({ min: 1, max: 40 }), fc.integer({ min: 1, max: 9000 })) });
    fc.assert(
      fc.property(fc.array(fc.oneof(op, fc.nat(200_000)), { maxLength: 40 }), (ops) => {
        const set = new BlockSet();
        const model = new Set<number>();
        for (const o of ops) {
          if (typeof o === 'number') {
            set.add(o);
            model.add(o);
          } else {
            set.addRange(o.first, o.count);
            for (let b = o.first; b < o.first + o.count; b++) model.add(b);
          }
        }
        expect(set.size).toBe(model.size);
        expect([...set]).toEqual([...model].sort((a, b) => a - b));
      }),
      { numRuns: 60 },
    );
  });

  it('delete undoes add, in array and bitmap containers, and empties a container it clears', () => {
    const op = fc.oneof(
      fc.record({ kind: fc.constant('range' as const), first: fc.nat(140_000), count: fc.integer({ min: 1, max: 9000 }) }),
      fc.record({ kind: fc.constantFrom('add' as const, 'delete' as const), block: fc.oneof(fc.nat(140_000), fc.nat(2 ** 40)) }),
    );
    fc.assert(
      fc.property(fc.array(op, { maxLength: 120 }), (ops) => {
        const set = new BlockSet();
        const model = new Set<number>();
        for (const o of ops) {
          if (o.kind === 'range') {
            set.addRange(o.first, o.count);
            for (let b = o.first; b < o.first + o.count; b++) model.add(b);
          } else if (o.kind === 'add') {
            expect(set.add(o.block)).toBe(!model.has(o.block) && (model.add(o.block), true));
          } else {
            expect(set.delete(o.block)).toBe(model.delete(o.block));
            expect(set.has(o.block)).toBe(false);
          }
        }
        expect(set.size).toBe(model.size);
        expect([...set]).toEqual([...model].sort((a, b) => a - b));
        for (const b of model) set.delete(b);
        expect(set.size).toBe(0);
        expect(set.byteSize()).toBe(0);
      }),
      { numRuns: 60 },
    );
  });
});
