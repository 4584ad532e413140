import { describe, expect, it } from 'vitest';
import { BlockLocks } from './block-locks';

const tick = () => new Promise((r) => setImmediate(r));

describe('BlockLocks', () => {
  it('grants an uncontended hold at once, without a promise', () => {
    const locks = new BlockLocks();
    const a = locks.enter(0, 4);
    const b = locks.enter(4, 4);
    expect(a.waitingOn).toBe(0);
    expect(b.waitingOn).toBe(0);
    expect(a.successors).toBeNull();
    locks.leave(a);
    locks.leave(b);
    expect(locks.held).toBe(0);
  });

  it('orders overlapping holds first come, first served, counting a shared holder once', async () => {
    const locks = new BlockLocks();
    const order: string[] = [];
    const a = locks.enter(0, 4);
    const b = locks.enter(2, 4); // shares blocks 2 and 3 with a: waits for a once
    const c = locks.enter(5, 1); // shares block 5 with b
    expect(b.waitingOn).toBe(1);
    expect(a.successors).toEqual([b]);
    expect(c.waitingOn).toBe(1);
    const pb = locks.ready(b).then(() => order.push('b'));
    const pc = locks.ready(c).then(() => order.push('c'));
    await tick();
    expect(order).toEqual([]);
    order.push('a');
    locks.leave(a);
    await pb;
    await tick();
    expect(order).toEqual(['a', 'b']); // c still waits for b
    locks.leave(b);
    await pc;
    expect(order).toEqual(['a', 'b', 'c']);
    locks.leave(c);
    locks.leave(c); // idempotent
    expect(locks.held).toBe(0);
  });

  it('a hold released before anyone waits lets its successor through without waiting', async () => {
    const locks = new BlockLocks();
    const a = locks.enter(7, 1);
    const b = locks.enter(7, 1);
    locks.leave(a);
    expect(b.waitingOn).toBe(0);
    await locks.ready(b);
    locks.leave(b);
  });

  it('drain waits for every hold taken before it, not for later ones', async () => {
    const locks = new BlockLocks();
    const a = locks.enter(0, 1);
    const b = locks.enter(0, 2);
    let drained = false;
    const d = locks.drain().then(() => (drained = true));
    const later = locks.enter(10, 1);
    locks.leave(a);
    await tick();
    expect(drained).toBe(false);
    await locks.ready(b);
    locks.leave(b);
    await d;
    expect(drained).toBe(true);
    locks.leave(later);
  });

  it('acquire() keeps working for callers that want a release function', async () => {
    const locks = new BlockLocks();
    const r1 = await locks.acquire(0, 2);
    let second = false;
    const p = locks.acquire(1, 1).then((r) => {
      second = true;
      return r;
    });
    await tick();
    expect(second).toBe(false);
    r1();
    (await p)();
    expect(locks.held).toBe(0);
  });

  it('holds in one granule that share no block do not wait; a range spanning granules waits once per predecessor', () => {
    const locks = new BlockLocks();
    const a = locks.enter(0, 1);
    const b = locks.enter(1, 1); // same granule as a, other block
    expect(b.waitingOn).toBe(0);
    const big = locks.enter(0, 1000); // spans many granules, overlaps a and b
    expect(big.waitingOn).toBe(2);
    const tail = locks.enter(999, 2); // overlaps big's last block only
    expect(tail.waitingOn).toBe(1);
    expect(a.successors).toEqual([big]);
    for (const h of [a, b, big, tail]) locks.leave(h);
    expect(locks.held).toBe(0);
  });

  it('never grants two overlapping holds at once, and grants every hold in the end (random ranges)', async () => {
    const locks = new BlockLocks();
    let x = 12345;
    const rnd = (n: number) => {
      x = (x * 1103515245 + 12345) & 0x7fffffff;
      return x % n;
    };
    const granted = new Set<{ first: number; count: number }>();
    let done = 0;
    const run = async () => {
      const first = rnd(300);
      const count = 1 + (rnd(4) === 0 ? rnd(200) : rnd(3));
      const hold = locks.enter(first, count);
      await locks.ready(hold);
      const me = { first, count };
      for (const g of granted) expect(g.first >= first + count || first >= g.first + g.count).toBe(true);
      granted.add(me);
      await tick();
      granted.delete(me);
      locks.leave(hold);
      done++;
    };
    await Promise.all(Array.from({ length: 400 }, run));
    expect(done).toBe(400);
    expect(locks.held).toBe(0);
  });
});
