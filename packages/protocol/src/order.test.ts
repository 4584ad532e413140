import { isHeadstartError } from '@headstart/errors';
import { describe, expect, it } from 'vitest';
import type { Message } from './messages';
import { ReplicaInbound, SourceInbound } from './order';

const hello: Message = { type: 'HELLO', versionMin: 1, versionMax: 1, node: 'a', nonce: Buffer.alloc(32), volume: { id: 'v', epoch: 1, size: 4096, blockSize: 4096 } };
const auth: Message = { type: 'AUTH', proof: Buffer.alloc(32) };
const begin = (n: number, kind: 'full' | 'delta' = 'delta'): Message => ({ type: 'BEGIN', n, kind });
const blocks = (n: number): Message => ({ type: 'BLOCKS', n, batch: 0, blocks: [] });
const close = (n: number): Message => ({ type: 'CLOSE', point: { n, scheduledAt: 0, closedAt: 0, lastSeq: 0 }, count: 0, digest: 0n });

function rejects(r: { accept(m: Message): void }, m: Message): boolean {
  try {
    r.accept(m);
    return false;
  } catch (err) {
    return isHeadstartError(err, 'LINK_OUT_OF_ORDER');
  }
}

describe('replica inbound order', () => {
  it('allows nothing but the handshake before authentication', () => {
    for (const m of [auth, begin(1), blocks(1), close(1), { type: 'PING', t: 1 } as Message]) expect(rejects(new ReplicaInbound(), m)).toBe(true);
    const r = new ReplicaInbound();
    r.accept(hello);
    expect(rejects(r, hello)).toBe(true);
    expect(rejects(r, begin(1))).toBe(true);
  });
  it('follows BEGIN, BLOCKS, CLOSE per snapshot, in order', () => {
    const r = new ReplicaInbound();
    r.accept(hello);
    r.accept(auth);
    expect(r.authenticated).toBe(true);
    expect(rejects(r, blocks(1))).toBe(true);
    const r2 = new ReplicaInbound();
    r2.accept(hello);
    r2.accept(auth);
    r2.accept(begin(0, 'full'));
    r2.accept(blocks(0));
    expect(rejects(r2, blocks(1))).toBe(true);
  });
  it('refuses a second BEGIN, a close of another snapshot and a delta gap', () => {
    const mk = () => {
      const r = new ReplicaInbound();
      r.accept(hello);
      r.accept(auth);
      r.accept(begin(3));
      return r;
    };
    expect(rejects(mk(), begin(4))).toBe(true);
    expect(rejects(mk(), close(4))).toBe(true);
    expect(rejects(mk(), { type: 'CHECKSUM_REQ', id: 1, first: 0, count: 1, rangeBlocks: 1 })).toBe(true);
    const r = mk();
    r.accept(blocks(3));
    r.accept(close(3));
    expect(rejects(r, begin(5))).toBe(true);
    expect(rejects(r, begin(3))).toBe(true);
    r.accept(begin(4));
    expect(r.current).toBe(4);
  });

  it("takes a catch-up's delta over an earlier point only where that point is the last closed", () => {
    const r = new ReplicaInbound();
    r.accept(hello);
    r.accept(auth);
    r.accept({ type: 'BEGIN', n: 9, kind: 'delta', from: 4 }); // the session's first point: the replica checks `from` against what it holds
    r.accept(blocks(9));
    r.accept(close(9));
    expect(rejects(r, { type: 'BEGIN', n: 12, kind: 'delta', from: 8 })).toBe(true);
    r.accept({ type: 'BEGIN', n: 12, kind: 'delta', from: 9 });
    expect(r.current).toBe(12);
  });
  it('refuses replica-to-source messages', () => {
    const r = new ReplicaInbound();
    r.accept(hello);
    r.accept(auth);
    expect(rejects(r, { type: 'ACK', n: 1 })).toBe(true);
  });
});

describe('source inbound order', () => {
  it('requires CHALLENGE then RESUME', () => {
    const s = new SourceInbound();
    expect(rejects(s, { type: 'ACK', n: 1 })).toBe(true);
    s.accept({ type: 'CHALLENGE', version: 2, node: 'r', nonce: Buffer.alloc(32) });
    expect(rejects(s, { type: 'ACK', n: 1 })).toBe(true);
    s.accept({ type: 'RESUME', proof: Buffer.alloc(32), epoch: 1, committed: null, haveCopy: false, staged: [] });
    s.accept({ type: 'ACK', n: 1 });
    expect(rejects(s, begin(1))).toBe(true);
  });
});
