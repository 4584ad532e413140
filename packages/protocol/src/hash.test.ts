import { beforeAll, describe, expect, it } from 'vitest';
import { SnapshotDigest, blockHash, isZero, loadHasher, zeroBlockHash } from './hash';

beforeAll(loadHasher);

describe('digest', () => {
  it('does not depend on order and follows replacement', () => {
    const a = new SnapshotDigest();
    const b = new SnapshotDigest();
    const h = [blockHash(Buffer.from('a')), blockHash(Buffer.from('b')), blockHash(Buffer.from('c'))];
    a.add(1, h[0]);
    a.add(2, h[1]);
    b.add(2, h[2]);
    b.add(1, h[0]);
    expect(a.value).not.toBe(b.value);
    b.remove(2, h[2]);
    b.add(2, h[1]);
    expect(a.value).toBe(b.value);
    expect(a.count).toBe(2);
  });
  it('tells the block number apart (same content, other block)', () => {
    const a = new SnapshotDigest();
    const b = new SnapshotDigest();
    a.add(1, 5n);
    b.add(2, 5n);
    expect(a.value).not.toBe(b.value);
  });
  it('hashes zero blocks the same however they travel', () => {
    expect(zeroBlockHash(4096)).toBe(blockHash(new Uint8Array(4096)));
    expect(isZero(new Uint8Array(4096))).toBe(true);
    const x = new Uint8Array(4096);
    x[4095] = 1;
    expect(isZero(x)).toBe(false);
    expect(isZero(x.subarray(1, 100))).toBe(true);
  });
});
