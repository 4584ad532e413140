/**
 * The archive's byte formats: round trips, and hostile input of every kind (bit flips,
 * truncation at every offset, garbage, well-checksummed but mis-shaped headers) must end
 * in ARCHIVE_CORRUPT, never a crash, a hang or a wrong decode.
 */
import fc from 'fast-check';
import { beforeAll, describe, expect, it } from 'vitest';
import { isHeadstartError } from '@headstart/errors';
import { applyChunkObject, decodeChunkObject, encodeChunkObject } from './chunk';
import { decodeEnvelope, encodeEnvelope, KIND_DELTA, KIND_FULL, KIND_MANIFEST } from './envelope';
import { loadHasher, type Hasher } from './hash';
import { decodeManifest, encodeManifest, type Manifest } from './manifest';

let h: Hasher;
beforeAll(async () => {
  h = await loadHasher();
});

const BS = 512;
const block = (seed: number) => Buffer.alloc(BS, seed);

function sampleDelta() {
  return encodeChunkObject(h, {
    kind: KIND_DELTA,
    volume: 'vol-1',
    blockSize: BS,
    chunk: 3,
    chunkBlocks: 8,
    point: 5,
    base: { point: 2, kind: KIND_FULL },
    blocks: [
      { index: 1, data: block(7) },
      { index: 2, data: Buffer.alloc(BS) },
      { index: 6, data: block(9) },
    ],
  });
}

function sampleManifest(): Manifest {
  return {
    volume: { id: 'vol-1', size: 8 * BS * 4, blockSize: BS },
    chunkBlocks: 8,
    point: { n: 5, scheduledAt: 1_700_000_000_000, closedAt: 1_700_000_000_100, lastSeq: 42 },
    createdAt: 1_700_000_000_200,
    base: 4,
    chunks: new Map([
      [0, [{ point: 0, kind: KIND_FULL, size: 100, hash: 0x0123456789abcdefn }]],
      [3, [{ point: 2, kind: KIND_FULL, size: 200, hash: 1n }, { point: 5, kind: KIND_DELTA, size: 300, hash: 0xffffffffffffffffn }]],
    ]),
  };
}

const codeOf = (fn: () => unknown) => {
  try {
    fn();
  } catch (err) {
    return isHeadstartError(err) ? err.code : `threw ${String(err)}`;
  }
  return 'decoded';
};

describe('chunk objects', () => {
  it('round-trip a delta: data blocks, zeroed blocks, base', () => {
    const { bytes, hash } = sampleDelta();
    const obj = decodeChunkObject(h, bytes, 'x');
    expect(obj).toMatchObject({ kind: KIND_DELTA, volume: 'vol-1', chunk: 3, point: 5, blocks: [1, 6], zeros: [2], base: { point: 2, kind: KIND_FULL } });
    expect(obj.hash).toBe(hash);
    const chunk = Buffer.alloc(8 * BS, 1);
    applyChunkObject(chunk, obj);
    expect(chunk.subarray(BS, 2 * BS).equals(block(7))).toBe(true);
    expect(chunk.subarray(2 * BS, 3 * BS).equals(Buffer.alloc(BS))).toBe(true);
    expect(chunk.subarray(6 * BS, 7 * BS).equals(block(9))).toBe(true);
    expect(chunk.subarray(0, BS).equals(block(1))).toBe(true); // untouched: the base's
  });

  it('a full object leaves zero blocks out and resets the chunk when applied', () => {
    const blocks = Array.from({ length: 8 }, (_, i) => ({ index: i, data: i % 3 === 0 ? block(i + 1) : Buffer.alloc(BS) }));
    const enc = encodeChunkObject(h, { kind: KIND_FULL, volume: 'v', blockSize: BS, chunk: 0, chunkBlocks: 8, point: 0, base: null, blocks });
    expect(enc.payloadBytes).toBe(3 * BS);
    const chunk = Buffer.alloc(8 * BS, 0xee);
    applyChunkObject(chunk, decodeChunkObject(h, enc.bytes, 'x'));
    for (let i = 0; i < 8; i++) expect(chunk.subarray(i * BS, (i + 1) * BS).equals(blocks[i].data), `block ${i}`).toBe(true);
  });

  it('encoding is deterministic (a rerun rewrites identical bytes)', () => {
    expect(sampleDelta().bytes.equals(sampleDelta().bytes)).toBe(true);
  });

  it('every single-bit flip is ARCHIVE_CORRUPT', () => {
    const { bytes } = sampleDelta();
    for (let i = 0; i < bytes.length; i += 1) {
      const bad = Buffer.from(bytes);
      bad[i] ^= 1 << i % 8;
      expect(codeOf(() => decodeChunkObject(h, bad, 'x')), `offset ${i}`).toBe('ARCHIVE_CORRUPT');
    }
  });

  it('every truncation and every extension is ARCHIVE_CORRUPT', () => {
    const { bytes } = sampleDelta();
    for (let len = 0; len < bytes.length; len++) expect(codeOf(() => decodeChunkObject(h, bytes.subarray(0, len), 'x')), `length ${len}`).toBe('ARCHIVE_CORRUPT');
    expect(codeOf(() => decodeChunkObject(h, Buffer.concat([bytes, Buffer.alloc(1)]), 'x'))).toBe('ARCHIVE_CORRUPT');
  });

  it('random garbage is ARCHIVE_CORRUPT', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 4096 }), (data) => {
        expect(codeOf(() => decodeChunkObject(h, data, 'x'))).toBe('ARCHIVE_CORRUPT');
        expect(codeOf(() => decodeManifest(h, data, 'x'))).toBe('ARCHIVE_CORRUPT');
      }),
      { numRuns: 300 },
    );
  });

  it('a correctly checksummed object with a mis-shaped header is ARCHIVE_CORRUPT', () => {
    const good = { volume: 'v', blockSize: BS, chunk: 0, chunkBlocks: 4, point: 3, blocks: [0], zeros: [], hashes: Buffer.alloc(8), base: { point: 1, kind: KIND_FULL } };
    const payload = [block(1)];
    // Fix the block hash so only the mutation under test is wrong.
    good.hashes.writeBigUInt64LE(h.h64(block(1)));
    expect(codeOf(() => decodeChunkObject(h, encodeEnvelope(h, KIND_DELTA, good, payload).bytes, 'x'))).toBe('decoded');
    const mutations: [string, object, number?][] = [
      ['not a map', [] as unknown as object],
      ['block size not a power of two', { ...good, blockSize: 600 }],
      ['negative chunk', { ...good, chunk: -1 }],
      ['string point', { ...good, point: '3' }],
      ['blocks out of range', { ...good, blocks: [4] }],
      ['blocks descending', { ...good, blocks: [1, 0], hashes: Buffer.alloc(16) }],
      ['zeros overlap blocks', { ...good, zeros: [0] }],
      ['hashes wrong length', { ...good, hashes: Buffer.alloc(7) }],
      ['base in the future', { ...good, base: { point: 3, kind: KIND_FULL } }],
      ['delta without base', { ...good, base: null }],
      ['full with base', { ...good }, KIND_FULL],
      ['payload too long', { ...good, blocks: [] , hashes: Buffer.alloc(0)}],
      ['wrong block hash', { ...good, hashes: Buffer.alloc(8, 1) }],
      ['a manifest kind', { ...good }, KIND_MANIFEST],
      ['huge chunkBlocks', { ...good, chunkBlocks: 2 ** 40 }],
    ];
    for (const [name, header, kind] of mutations) {
      expect(codeOf(() => decodeChunkObject(h, encodeEnvelope(h, (kind ?? KIND_DELTA) as 1, header, payload).bytes, 'x')), name).toBe('ARCHIVE_CORRUPT');
    }
  });

  it('a newer format version is refused with a message that says so', () => {
    const { bytes } = sampleDelta();
    const bad = Buffer.from(bytes);
    bad[4] = 2;
    bad.writeBigUInt64LE(h.h64(bad.subarray(0, bad.length - 8)), bad.length - 8);
    expect(() => decodeEnvelope(h, bad, 'x')).toThrow(/version 2/);
  });
});

describe('manifests', () => {
  it('round-trip', () => {
    const m = sampleManifest();
    const back = decodeManifest(h, encodeManifest(h, m), 'x');
    expect(back).toEqual(m);
  });

  it('every bit flip and truncation is ARCHIVE_CORRUPT', () => {
    const bytes = encodeManifest(h, sampleManifest());
    for (let i = 0; i < bytes.length; i++) {
      const bad = Buffer.from(bytes);
      bad[i] ^= 0x80;
      expect(codeOf(() => decodeManifest(h, bad, 'x')), `flip ${i}`).toBe('ARCHIVE_CORRUPT');
      expect(codeOf(() => decodeManifest(h, bytes.subarray(0, i), 'x')), `cut ${i}`).toBe('ARCHIVE_CORRUPT');
    }
  });

  it('mis-shaped chains are ARCHIVE_CORRUPT', () => {
    const base = sampleManifest();
    const bad = (chunks: Manifest['chunks']) => codeOf(() => decodeManifest(h, encodeManifest(h, { ...base, chunks }), 'x'));
    const e = (point: number, kind: 1 | 2) => ({ point, kind, size: 100, hash: 1n });
    expect(bad(new Map([[0, [e(1, KIND_DELTA)]]]))).toBe('ARCHIVE_CORRUPT'); // starts with a delta
    expect(bad(new Map([[0, [e(1, KIND_FULL), e(2, KIND_FULL)]]]))).toBe('ARCHIVE_CORRUPT'); // two fulls
    expect(bad(new Map([[0, [e(3, KIND_FULL), e(2, KIND_DELTA)]]]))).toBe('ARCHIVE_CORRUPT'); // descending
    expect(bad(new Map([[0, [e(6, KIND_FULL)]]]))).toBe('ARCHIVE_CORRUPT'); // newer than the point
    expect(bad(new Map([[4, [e(1, KIND_FULL)]]]))).toBe('ARCHIVE_CORRUPT'); // outside the volume
    expect(bad(new Map([[0, []]]))).toBe('ARCHIVE_CORRUPT'); // empty chain
    expect(bad(new Map([[1, [e(1, KIND_FULL)]]]))).toBe('decoded');
  });

  it('a chunk object is not taken for a manifest, nor the reverse', () => {
    expect(codeOf(() => decodeManifest(h, sampleDelta().bytes, 'x'))).toBe('ARCHIVE_CORRUPT');
    expect(codeOf(() => decodeChunkObject(h, encodeManifest(h, sampleManifest()), 'x'))).toBe('ARCHIVE_CORRUPT');
  });
});
