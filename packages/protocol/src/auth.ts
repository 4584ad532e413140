/**
 * Mutual challenge-response with a pairing secret; the secret never crosses the wire.
 *
 *   source  -> HELLO     { nonceC, volume }
 *   replica -> CHALLENGE { nonceS }
 *   source  -> AUTH      { proofC = HMAC(secret, "C" | v | nonceC | nonceS | volume) }
 *   replica -> RESUME    { proofS = HMAC(secret, "S" | v | nonceC | nonceS | volume), ... }
 *
 * Each side checks the other's proof over a nonce IT chose fresh for this connection, so a
 * recorded handshake replayed later fails; the role letter stops reflecting a proof back;
 * the volume identity and epoch are bound in, so they cannot be swapped in flight.
 *
 * The replica proves only after the source has (protocol 2; in 1 CHALLENGE carried it): a
 * stranger who connects to a replica learns nothing to test guesses of the secret against
 * offline. The source proves first, but only to the replica it dialled, whose TLS
 * certificate it checks (pinned by pairing), so no stranger gets its proof either.
 */
import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import { NONCE_BYTES } from './constants';
import type { WireVolume } from './messages';

export function freshNonce(): Buffer {
  return randomBytes(NONCE_BYTES);
}

export interface ProofInput {
  readonly version: number;
  readonly sourceNonce: Uint8Array;
  readonly replicaNonce: Uint8Array;
  readonly volume: WireVolume;
}

export function computeProof(secret: string | Uint8Array, role: 'source' | 'replica', p: ProofInput): Buffer {
  const mac = createHmac('sha256', secret);
  mac.update(`headstart-link/${role === 'source' ? 'C' : 'S'}/${p.version}/`);
  mac.update(p.sourceNonce);
  mac.update(p.replicaNonce);
  mac.update(JSON.stringify([p.volume.id, p.volume.epoch, p.volume.size, p.volume.blockSize]));
  return mac.digest();
}

export function verifyProof(secret: string | Uint8Array, role: 'source' | 'replica', p: ProofInput, proof: Uint8Array): boolean {
  const expected = computeProof(secret, role, p);
  return proof.length === expected.length && timingSafeEqual(expected, proof);
}

/** Picks the highest version both ranges contain, or undefined. */
export function agreeVersion(ours: { min: number; max: number }, theirs: { min: number; max: number }): number | undefined {
  const v = Math.min(ours.max, theirs.max);
  return v >= Math.max(ours.min, theirs.min) ? v : undefined;
}
