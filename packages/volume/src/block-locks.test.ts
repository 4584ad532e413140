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
});
