/**
 * The volume's LMDB records: one encode/decode pair per record kind, with a format version.
 * Everything read back from LMDB is checked for shape before use: a damaged or foreign
 * store must fail with VOLUME_CORRUPT, never be half-trusted.
 *
 * Layout (one LMDB environment `meta.lmdb` in the volume directory):
 *   meta       'volume' -> VolumeRecord            identity and geometry, role, epoch
 *              'replica' -> SnapshotPoint           the replica's committed point (replicas only)
 *   log        seq -> [offset, length, time, kind]  the write log since the oldest point a sink still needs
 *   snapshots  n -> [scheduledAt, closedAt, lastSeq] closed snapshot points still kept
 *   preserved  [n, block] -> bytes                 content of `block` as of closed point n (copy-on-write)
 *   sinks      name -> [acked | null, baseline]    each sink's acknowledged point
 */
import { HeadstartError } from '@headstart/errors';
import type { SinkState, SnapshotPoint, VolumeInfo, VolumeRole, WriteEntry } from './types';

export const VOLUME_FORMAT_VERSION = 1;

export interface VolumeRecord extends VolumeInfo {
  readonly version: number;
  readonly createdAt: number;
  /** Point 0 is the empty image createVolume made (so a first full copy has nothing to send). Absent in older records: false. */
  readonly pristine?: boolean;
}

export type WriteKind = 'write' | 'zero' | 'trim';
const KINDS: readonly WriteKind[] = ['write', 'zero', 'trim'];

function corrupt(what: string, value: unknown): HeadstartError {
  return new HeadstartError('VOLUME_CORRUPT', `volume metadata record ${what} is malformed: ${safeJson(value)}`);
}

function safeJson(value: unknown): string {
  try {
    return JSON.stringify(value)?.slice(0, 200) ?? String(value);
  } catch {
    return String(value);
  }
}

const isInt = (x: unknown): x is number => typeof x === 'number' && Number.isSafeInteger(x);
const isNonNegInt = (x: unknown): x is number => isInt(x) && x >= 0;

export function encodeVolumeRecord(r: VolumeRecord): Record<string, unknown> {
  return { ...r };
}

export function decodeVolumeRecord(value: unknown): VolumeRecord {
  const v = value as Record<string, unknown> | null;
  if (v === null || typeof v !== 'object') throw corrupt('volume', value);
  const { version, id, name, size, blockSize, role, epoch, createdAt, pristine } = v;
  if (version !== VOLUME_FORMAT_VERSION) {
    throw new HeadstartError('VOLUME_CORRUPT', `volume format version ${safeJson(version)} is not supported (this build reads ${VOLUME_FORMAT_VERSION})`);
  }
  if (typeof id !== 'string' || typeof name !== 'string' || !isNonNegInt(size) || !isNonNegInt(blockSize) || !isNonNegInt(epoch) || !isNonNegInt(createdAt)) {
    throw corrupt('volume', value);
  }
  if (role !== 'primary' && role !== 'replica') throw corrupt('volume.role', role);
  if (pristine !== undefined && typeof pristine !== 'boolean') throw corrupt('volume.pristine', pristine);
  return { version, id, name, size, blockSize, role: role as VolumeRole, epoch, createdAt, pristine: pristine === true };
}

export function encodeLogEntry(e: WriteEntry, kind: WriteKind): unknown[] {
  return [e.offset, e.length, e.time, KINDS.indexOf(kind)];
}

export function decodeLogEntry(seq: unknown, value: unknown): WriteEntry & { kind: WriteKind } {
  if (!isNonNegInt(seq) || !Array.isArray(value) || value.length !== 4) throw corrupt(`log[${safeJson(seq)}]`, value);
  const [offset, length, time, kindIndex] = value as unknown[];
  if (!isNonNegInt(offset) || !isNonNegInt(length) || !isNonNegInt(time) || !isNonNegInt(kindIndex) || kindIndex >= KINDS.length) {
    throw corrupt(`log[${seq}]`, value);
  }
  return { seq, offset, length, time, kind: KINDS[kindIndex] };
}

export function encodeSnapshot(p: SnapshotPoint): unknown[] {
  return [p.scheduledAt, p.closedAt, p.lastSeq];
}

export function decodeSnapshot(n: unknown, value: unknown): SnapshotPoint {
  if (!isNonNegInt(n) || !Array.isArray(value) || value.length !== 3) throw corrupt(`snapshots[${safeJson(n)}]`, value);
  const [scheduledAt, closedAt, lastSeq] = value as unknown[];
  if (!isNonNegInt(scheduledAt) || !isNonNegInt(closedAt) || !isNonNegInt(lastSeq)) throw corrupt(`snapshots[${n}]`, value);
  return { n, scheduledAt, closedAt, lastSeq };
}

export function encodeReplicaPoint(p: SnapshotPoint): unknown[] {
  return [p.n, p.scheduledAt, p.closedAt, p.lastSeq];
}

export function decodeReplicaPoint(value: unknown): SnapshotPoint {
  if (!Array.isArray(value) || value.length !== 4) throw corrupt('replica', value);
  const [n, ...rest] = value as unknown[];
  return decodeSnapshot(n, rest);
}

export function encodeSink(s: SinkState): unknown[] {
  return s.catchUpTo === undefined ? [s.acked, s.baseline] : [s.acked, s.baseline, s.catchUpTo];
}

/** [acked, baseline] or, for a sink catching up (SinkState.catchUpTo), [acked, baseline, catchUpTo]. */
export function decodeSink(name: unknown, value: unknown): SinkState {
  if (typeof name !== 'string' || !Array.isArray(value) || (value.length !== 2 && value.length !== 3)) throw corrupt(`sinks[${safeJson(name)}]`, value);
  const [acked, baseline, catchUpTo] = value as unknown[];
  if (!(acked === null || isNonNegInt(acked)) || !isNonNegInt(baseline)) throw corrupt(`sinks[${name}]`, value);
  if (value.length === 2) return { name, acked, baseline };
  if (acked === null || !isNonNegInt(catchUpTo) || catchUpTo <= acked) throw corrupt(`sinks[${name}]`, value);
  return { name, acked, baseline, catchUpTo };
}
