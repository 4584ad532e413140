import { isHeadstartError } from '@headstart/errors';
import fc from 'fast-check';
import { Packr } from 'msgpackr';
import { beforeAll, describe, expect, it } from 'vitest';
import { MAX_CONTROL_FRAME, MAX_FRAME } from './constants';
import { decodeFrame, encodeFrame, encodeFrameWith, maxFrameBytes } from './frame';
import { blockHash, loadHasher } from './hash';
import type { Message } from './messages';

beforeAll(loadHasher);

const nonce = Buffer.alloc(32, 7);
const samples = (): Message[] => {
  const data = Buffer.alloc(4096, 3);
  return [
    { type: 'HELLO', versionMin: 2, versionMax: 2, node: 'a', nonce, volume: { id: 'v1', epoch: 2, size: 1 << 20, blockSize: 4096 } },
    { type: 'HELLO', versionMin: 2, versionMax: 2, node: 'a', nonce, volume: { id: 'v1', epoch: 2, size: 1 << 20, blockSize: 4096, group: 'app' } },
    { type: 'CHALLENGE', version: 2, node: 'b', nonce },
    { type: 'AUTH', proof: Buffer.alloc(32, 2) },
    { type: 'RESUME', proof: Buffer.alloc(32, 1), epoch: 1, committed: { n: 3, scheduledAt: 10, closedAt: 11, lastSeq: 99 }, haveCopy: false, staged: [{ n: 4, entries: Buffer.alloc(32, 9) }] },
    { type: 'RESUME', proof: Buffer.alloc(32, 4), epoch: 1, committed: null, haveCopy: true, staged: [] },
    { type: 'BEGIN', n: 4, kind: 'delta' },
    { type: 'BEGIN', n: 9, kind: 'delta', from: 4 },
    { type: 'BLOCKS', n: 4, batch: 1, blocks: [{ block: 7, hash: blockHash(data), data }, { block: 9, hash: 0xffff_ffff_ffff_ffffn, data: Buffer.alloc(0) }] },
    { type: 'CLOSE', point: { n: 4, scheduledAt: 1, closedAt: 2, lastSeq: 3 }, count: 2, digest: 123456789012345678n },
    { type: 'STAGED', batch: 1, bytes: 4096 },
    { type: 'ACK', n: 4 },
    { type: 'NACK', n: 4, code: 'REPL_DIGEST_MISMATCH', message: 'x' },
    { type: 'ERROR', code: 'LINK_AUTH_FAILED', message: 'bad' },
    { type: 'CHECKSUM_REQ', id: 1, first: 0, count: 1000, rangeBlocks: 256 },
    { type: 'CHECKSUM_REPLY', id: 1, hashes: Buffer.alloc(32, 5) },
    { type: 'PING', t: 5 },
    { type: 'PONG', t: 5 },
  ];
};

/** Plain comparable form: binary as hex, bigint as decimal text. */
function norm(v: unknown): unknown {
  if (typeof v === 'bigint') return v.toString();
  if (v instanceof Uint8Array) return Buffer.from(v).toString('hex');
  if (Array.isArray(v)) return v.map(norm);
  if (v && typeof v === 'object') return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, norm(x)]));
  return v;
}

function codeOf(fn: () => unknown): string {
  try {
    fn();
  } catch (err) {
    if (isHeadstartError(err)) return err.code;
    throw err; // anything but a HeadstartError is a crash of the decoder
  }
  return 'DECODED';
}

describe('frames', () => {
  it('round-trips every message type', () => {
    for (const m of samples()) {
      const back = decodeFrame(encodeFrame(m));
      expect(back.type).toBe(m.type);
      expect(norm(back)).toEqual(norm(m));
    }
  });

  it('encodeFrameWith writes the same bytes into a supplied (reused, dirty) buffer', () => {
    const pool = Buffer.alloc(MAX_FRAME, 0xab);
    for (const m of samples()) {
      const frame = encodeFrameWith(m, (size) => pool.subarray(0, size));
      expect(Buffer.compare(frame, encodeFrame(m))).toBe(0);
      if (m.type === 'BLOCKS') expect(frame.buffer).toBe(pool.buffer);
    }
    const blocks = samples().find((m) => m.type === 'BLOCKS')!;
    expect(() => encodeFrameWith(blocks, (size) => Buffer.alloc(size + 1))).toThrow();
  });

  it('rejects unknown tags, empty frames and oversize frames before decoding', () => {
    expect(codeOf(() => decodeFrame(Buffer.alloc(0)))).toBe('LINK_MALFORMED_FRAME');
    expect(codeOf(() => decodeFrame(Buffer.from([200, 0x80])))).toBe('LINK_UNKNOWN_MESSAGE');
    expect(codeOf(() => decodeFrame(Buffer.from([0])))).toBe('LINK_UNKNOWN_MESSAGE');
    // A control frame one byte over its limit, whose body would not even decode: size wins.
    expect(codeOf(() => decodeFrame(Buffer.concat([Buffer.from([9]), Buffer.alloc(MAX_CONTROL_FRAME)])))).toBe('LINK_FRAME_TOO_LARGE');
    expect(maxFrameBytes('BLOCKS')).toBeLessThanOrEqual(MAX_FRAME);
  });

  it('rejects every truncation of every valid frame with a stable code', () => {
    for (const m of samples()) {
      const f = encodeFrame(m);
      for (let cut = 0; cut < f.length; cut++) {
        const code = codeOf(() => decodeFrame(f.subarray(0, cut)));
        expect(['LINK_MALFORMED_FRAME'], `${m.type} cut at ${cut}`).toContain(code);
      }
    }
  });

  it('rejects wrong shapes: missing fields, wrong types, negative and unsafe numbers, extra values', () => {
    const p = new Packr({ useRecords: false });
    const frame = (tag: number, body: unknown) => Buffer.concat([Buffer.from([tag]), p.pack(body)]);
    const bad: [number, unknown][] = [
      [9, {}], [9, { n: -1 }], [9, { n: 1.5 }], [9, { n: '1' }], [9, { n: 2 ** 60 }], [9, [1]], [9, null],
      [5, { n: 1, kind: 'sideways' }],
      [5, { n: 4, kind: 'delta', from: 4 }], [5, { n: 4, kind: 'delta', from: -1 }], [5, { n: 4, kind: 'full', from: 1 }], [5, { n: 4, kind: 'delta', from: '1' }],
      [6, { n: 1, batch: 1, blocks: [[1, Buffer.alloc(7), Buffer.alloc(0)]] }],
      [6, { n: 1, batch: 1, blocks: [[1, Buffer.alloc(8)]] }],
      [6, { n: 1, batch: 1, blocks: { 0: 1 } }],
      [6, { n: 1, batch: 1, blocks: [[1, Buffer.alloc(8), 'text']] }],
      [1, { versionMin: 2, versionMax: 1, node: 'a', nonce, volume: { id: 'v', epoch: 1, size: 1, blockSize: 1 } }],
      [1, { versionMin: 1, versionMax: 1, node: 'a', nonce: Buffer.alloc(31), volume: { id: 'v', epoch: 1, size: 1, blockSize: 1 } }],
      [3, { proof: 'x'.repeat(32) }],
      [4, { epoch: 1, committed: null, haveCopy: false, staged: [{ n: 1, entries: Buffer.alloc(15) }] }],
      [7, { point: { n: 1, scheduledAt: 1, closedAt: 1 }, count: 1, digest: Buffer.alloc(8) }],
      [12, { id: 1, first: 0, count: 10, rangeBlocks: 0 }],
      [12, { id: 1, first: 0, count: 2 ** 40, rangeBlocks: 1 }],
      [13, { id: 1, hashes: Buffer.alloc(9) }],
    ];
    for (const [tag, body] of bad) expect(codeOf(() => decodeFrame(frame(tag, body))), JSON.stringify(body)).toBe('LINK_MALFORMED_FRAME');
    // two msgpack values in one frame
    expect(codeOf(() => decodeFrame(Buffer.concat([frame(9, { n: 1 }), p.pack({ n: 2 })])))).toBe('LINK_MALFORMED_FRAME');
  });

  it('never crashes on random garbage (every tag, random bodies)', () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 255 }), fc.uint8Array({ maxLength: 300 }), (tag, body) => {
        const code = codeOf(() => decodeFrame(Buffer.concat([Buffer.from([tag]), body])));
        expect(['LINK_MALFORMED_FRAME', 'LINK_UNKNOWN_MESSAGE', 'DECODED']).toContain(code);
      }),
      { numRuns: 3000 },
    );
  });

  it('never crashes on valid frames with random byte flips', () => {
    const frames = samples().map(encodeFrame);
    fc.assert(
      fc.property(fc.integer({ min: 0, max: frames.length - 1 }), fc.array(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 255 })), { minLength: 1, maxLength: 4 }), (i, flips) => {
        const f = Buffer.from(frames[i]);
        for (const [at, v] of flips) f[at % f.length] = v;
        const code = codeOf(() => decodeFrame(f));
        expect(['LINK_MALFORMED_FRAME', 'LINK_UNKNOWN_MESSAGE', 'LINK_FRAME_TOO_LARGE', 'DECODED']).toContain(code);
      }),
      { numRuns: 3000 },
    );
  });
});
