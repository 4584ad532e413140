/**
 * Model-based property test: random sequences of writes, zeroes, closes, sink changes,
 * acknowledgements and reopens run against the real volume and against a plain in-memory
 * model (a byte array plus a copy of it at every close). Every kept point must read exactly
 * as the model's copy, and the live volume as the model.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { tempDir } from '../../../test/helpers/tmp';
import { createVolume, openVolume, type Volume } from './index';

const BS = 512;
const BLOCKS = 24;
const SIZE = BS * BLOCKS;

type Cmd =
  | { op: 'write'; offset: number; length: number; byte: number }
  | { op: 'zero'; offset: number; length: number }
  | { op: 'close' }
  | { op: 'ack'; sink: number; back: number }
  | { op: 'reopen' }
  | { op: 'concurrent'; count: number; seed: number };

const range = fc.tuple(fc.nat(SIZE - 1), fc.integer({ min: 1, max: 3 * BS })).map(([offset, length]) => ({ offset, length: Math.min(length, SIZE - offset) }));
const cmd: fc.Arbitrary<Cmd> = fc.oneof(
  { weight: 6, arbitrary: fc.tuple(range, fc.integer({ min: 1, max: 255 })).map(([r, byte]) => ({ op: 'write' as const, ...r, byte })) },
  { weight: 1, arbitrary: range.map((r) => ({ op: 'zero' as const, ...r })) },
  { weight: 3, arbitrary: fc.constant({ op: 'close' as const }) },
  { weight: 2, arbitrary: fc.tuple(fc.nat(1), fc.nat(2)).map(([sink, back]) => ({ op: 'ack' as const, sink, back })) },
  { weight: 1, arbitrary: fc.constant({ op: 'reopen' as const }) },
  { weight: 1, arbitrary: fc.tuple(fc.integer({ min: 2, max: 6 }), fc.nat(1000)).map(([count, seed]) => ({ op: 'concurrent' as const, count, seed })) },
);

describe('volume against an in-memory model', () => {
  it('every kept point and the live volume match the model', async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(cmd, { minLength: 5, maxLength: 40 }), async (cmds) => {
        const dir = tempDir();
        let v: Volume = await createVolume(dir, { size: SIZE, blockSize: BS });
        const sinks = ['s0', 's1'];
        for (const s of sinks) await v.addSink(s);
        const model = Buffer.alloc(SIZE);
        const points = new Map<number, Buffer>([[0, Buffer.alloc(SIZE)]]);
        const acked = [-1, -1]; // a sink with no point yet needs point 0 in full
        let writeByte = 1;
        try {
          for (const c of cmds) {
            switch (c.op) {
              case 'write':
                await v.write(c.offset, Buffer.alloc(c.length, c.byte));
                model.fill(c.byte, c.offset, c.offset + c.length);
                break;
              case 'zero':
                await v.writeZeroes(c.offset, c.length);
                model.fill(0, c.offset, c.offset + c.length);
                break;
              case 'concurrent': {
                // Overlapping writes in flight together: the result is theirs in issue order.
                const ops: Promise<void>[] = [];
                for (let i = 0; i < c.count; i++) {
                  const offset = (c.seed * (i + 7) * 131) % (SIZE - BS);
                  const byte = (writeByte++ % 250) + 1;
                  ops.push(v.write(offset, Buffer.alloc(BS + 100 > SIZE - offset ? SIZE - offset : BS + 100, byte)));
                  model.fill(byte, offset, Math.min(SIZE, offset + BS + 100));
                }
                await Promise.all(ops);
                break;
              }
              case 'close': {
                const p = await v.closeSnapshot();
                points.set(p.n, Buffer.from(model));
                break;
              }
              case 'ack': {
                const latest = v.latestClosed!.n;
                const target = Math.max(acked[c.sink], latest - c.back);
                if (target > acked[c.sink]) {
                  await v.acknowledge(sinks[c.sink], target);
                  acked[c.sink] = target;
                }
                break;
              }
              case 'reopen':
                await v.shutdown();
                v = await openVolume(dir);
                break;
            }
            expect((await v.read(0, SIZE)).equals(model)).toBe(true);
          }
          const floor = Math.min(...acked);
          expect(v.floor).toBe(floor);
          for (const [n, content] of points) {
            if (n <= floor) continue;
            const got = await v.readBlocksAt(n, 0, BLOCKS);
            expect(got.equals(content), `point ${n}`).toBe(true);
            // The dirty set of n is exactly the blocks whose content may differ from n-1's.
            const prev = points.get(n - 1);
            if (prev !== undefined) {
              for (let b = 0; b < BLOCKS; b++) {
                const changed = !prev.subarray(b * BS, (b + 1) * BS).equals(content.subarray(b * BS, (b + 1) * BS));
                if (changed) expect(v.dirtyBlocks(n).has(b), `block ${b} of point ${n}`).toBe(true);
              }
            }
          }
        } finally {
          await v.shutdown();
        }
      }),
      { numRuns: process.env.CI ? 60 : 100 },
    );
  });
});
