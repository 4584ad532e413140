import { describe, expect, it } from 'vitest';
import { ThroughputMeter, TokenBucket, burstFor } from './rate';

const KiB = 1024;
const MiB = 1024 * KiB;

describe('rate limit (token bucket)', () => {
  it('saves up at most a quarter second of its rate while idle, so a cap holds after a pause', () => {
    let t = 0;
    const b = new TokenBucket(64 * KiB, MiB, () => t);
    t = 60_000; // a minute idle
    expect(b.available()).toBe(64 * KiB); // the floor: 0.25 s would be 16 KiB
    // 1 MiB after the pause: 64 KiB go at once, the rest is waited off at 64 KiB/s
    expect(b.take(MiB)).toBeCloseTo(((MiB - 64 * KiB) / (64 * KiB)) * 1000, 6);
  });

  it('sends at the rate over time, whatever the frame sizes', () => {
    let t = 0;
    const rate = 10 * MiB;
    const b = new TokenBucket(rate, MiB, () => t);
    let sent = 0;
    while (t < 10_000) {
      const wait = b.take(MiB);
      sent += MiB;
      t += wait;
    }
    // 10 s at 10 MiB/s, plus what was saved up at the start (0.25 s worth)
    expect(sent / (t / 1000)).toBeLessThanOrEqual(rate * 1.03);
  });

  it('a new rate brings its own burst; no limit means no wait', () => {
    let t = 0;
    const b = new TokenBucket(null, MiB, () => t);
    expect(b.take(100 * MiB)).toBe(0);
    b.setRate(128 * KiB);
    t += 10_000;
    expect(b.available()).toBe(64 * KiB);
    b.setRate(100 * MiB);
    t += 10_000;
    expect(b.available()).toBe(MiB); // 25 MiB by the quarter second, capped at one frame
    expect(burstFor(null, MiB)).toBe(MiB);
  });

  it('passes a shared cap\'s turn by deadline, and every eighth turn to the link that waited longest', async () => {
    const b = new TokenBucket(MiB, MiB);
    const first = await b.turn(0);
    const order: number[] = [];
    const wait = (deadline: number) => b.turn(deadline).then((end) => {
      order.push(deadline);
      end();
    });
    // A late deadline queued first, then ten earlier ones.
    const all = [wait(1000), ...[30, 10, 20, 90, 80, 70, 60, 50, 40, 35].map(wait)];
    expect(b.contended).toBe(true);
    expect(b.available()).toBeGreaterThan(0);
    first();
    await Promise.all(all);
    // Seven turns by deadline, the eighth to the longest waiting (the late one), then the rest.
    expect(order).toEqual([10, 20, 30, 35, 40, 50, 60, 1000, 70, 80, 90]);
    expect(b.contended).toBe(false);
    // A turn its holder sent nothing in does not count toward the reserve turn: with the
    // earliest six sending nothing, the late link gets no reserve turn among these eleven.
    const third = await b.turn(0);
    const order2: number[] = [];
    const wait2 = (deadline: number) => b.turn(deadline).then((end) => {
      order2.push(deadline);
      end(deadline >= 60);
    });
    const all2 = [wait2(1000), ...[30, 10, 20, 90, 80, 70, 60, 50, 40, 35].map(wait2)];
    third();
    await Promise.all(all2);
    expect(order2).toEqual([10, 20, 30, 35, 40, 50, 60, 70, 80, 90, 1000]);
    // Without a limit there is no turn to wait for.
    const free = new TokenBucket(null, MiB);
    const end = await free.turn(5);
    expect(free.contended).toBe(false);
    end();
  });
});

describe('throughput meter', () => {
  it('shows a slow link\'s rate though its window holds one acknowledgement at a time', () => {
    let now = 0;
    const m = new ThroughputMeter(() => now, 5_000);
    // 1 MiB batches staged every 3.5 s: about 300 KB/s.
    for (let i = 0; i < 6; i++) {
      now = i * 3_500;
      m.add(1 << 20);
    }
    now += 2_000; // one batch in the window, the one before it 5.5 s ago
    expect(m.bytesPerSecond).toBe(0); // what the planner reads (its gauge skips zeroes)
    expect(m.shownBytesPerSecond).toBeCloseTo((1 << 20) / 5.5, -3);
    now += 30_000; // idle: nothing shown
    expect(m.shownBytesPerSecond).toBe(0);
  });

  it('shows the window\'s rate on a fast link', () => {
    let now = 0;
    const m = new ThroughputMeter(() => now, 5_000);
    for (let i = 0; i <= 50; i++) {
      now = i * 100;
      m.add(100_000);
    }
    expect(m.shownBytesPerSecond).toBe(m.bytesPerSecond);
    expect(m.bytesPerSecond).toBeCloseTo(1_000_000, -4);
  });
});

