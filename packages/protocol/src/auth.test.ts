import { describe, expect, it } from 'vitest';
import { agreeVersion, computeProof, freshNonce, verifyProof, type ProofInput } from './auth';

const volume = { id: 'vol', epoch: 3, size: 1 << 20, blockSize: 4096 };

describe('challenge-response', () => {
  it('accepts the right secret in both directions', () => {
    const p: ProofInput = { version: 1, sourceNonce: freshNonce(), replicaNonce: freshNonce(), volume };
    expect(verifyProof('s3cret', 'source', p, computeProof('s3cret', 'source', p))).toBe(true);
    expect(verifyProof('s3cret', 'replica', p, computeProof('s3cret', 'replica', p))).toBe(true);
  });
  it('refuses a wrong secret, a reflected proof, a replayed proof and a swapped volume', () => {
    const p: ProofInput = { version: 1, sourceNonce: freshNonce(), replicaNonce: freshNonce(), volume };
    const proof = computeProof('s3cret', 'source', p);
    expect(verifyProof('other', 'source', p, proof)).toBe(false);
    expect(verifyProof('s3cret', 'replica', p, proof)).toBe(false);
    // the same proof presented against a fresh replica nonce (a replay)
    expect(verifyProof('s3cret', 'source', { ...p, replicaNonce: freshNonce() }, proof)).toBe(false);
    expect(verifyProof('s3cret', 'source', { ...p, volume: { ...volume, epoch: 4 } }, proof)).toBe(false);
    expect(verifyProof('s3cret', 'source', p, proof.subarray(0, 31))).toBe(false);
  });
  it('agrees on the highest shared version or none', () => {
    expect(agreeVersion({ min: 1, max: 3 }, { min: 2, max: 5 })).toBe(3);
    expect(agreeVersion({ min: 1, max: 1 }, { min: 2, max: 5 })).toBeUndefined();
  });
});
