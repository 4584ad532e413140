/**
 * The envelope every archive object shares (chunk objects, delta objects, manifests):
 *
 *   0      4  magic "HSAR"
 *   4      1  format version (1)
 *   5      1  kind: 1 full chunk, 2 delta, 3 manifest
 *   6      2  reserved, 0
 *   8      4  header length H, u32 LE
 *   12     H  header, msgpack (shape-checked by the kind's decoder)
 *   12+H   P  payload (kind-specific; empty for a manifest)
 *   end-8  8  xxh64 of every byte before it, u64 LE
 *
 * A reader checks size, magic, version and the trailing checksum before it decodes one
 * byte of the header, so torn, truncated or foreign objects are ARCHIVE_CORRUPT, never a
 * crash or a wrong restore. A newer version is refused with a clear message rather than
 * guessed at; old versions keep their own decoder here when the format moves on.
 */
import { Packr } from 'msgpackr';
import { HeadstartError } from '@headstart/errors';
import type { Hasher } from './hash';

export const MAGIC = 0x52415348; // "HSAR" read as u32 LE
export const FORMAT_VERSION = 1;
export const KIND_FULL = 1;
export const KIND_DELTA = 2;
export const KIND_MANIFEST = 3;
export type ObjectKind = typeof KIND_FULL | typeof KIND_DELTA | typeof KIND_MANIFEST;

const FIXED = 12;
const TRAILER = 8;
/** Headers are small (block lists, chains); a bigger one is damage or hostile input. */
export const MAX_HEADER_BYTES = 256 * 1024 * 1024;

const packr = new Packr({ useRecords: false, mapsAsObjects: true, int64AsType: 'number' });

export interface Envelope {
  readonly kind: ObjectKind;
  /** Untyped decoded msgpack: the kind's decoder checks its shape. */
  readonly header: unknown;
  readonly payload: Buffer;
  /** The trailing xxh64, which manifests record to pin the exact object they need. */
  readonly hash: bigint;
}

export function encodeEnvelope(hasher: Hasher, kind: ObjectKind, header: object, payload: readonly Uint8Array[] = []): { bytes: Buffer; hash: bigint } {
  const head = packr.pack(header);
  const payloadLen = payload.reduce((s, p) => s + p.length, 0);
  const bytes = Buffer.allocUnsafe(FIXED + head.length + payloadLen + TRAILER);
  bytes.writeUInt32LE(MAGIC, 0);
  bytes.writeUInt8(FORMAT_VERSION, 4);
  bytes.writeUInt8(kind, 5);
  bytes.writeUInt16LE(0, 6);
  bytes.writeUInt32LE(head.length, 8);
  head.copy(bytes, FIXED);
  let off = FIXED + head.length;
  for (const p of payload) {
    bytes.set(p, off);
    off += p.length;
  }
  const hash = hasher.h64(bytes.subarray(0, off));
  bytes.writeBigUInt64LE(hash, off);
  return { bytes, hash };
}

export function decodeEnvelope(hasher: Hasher, bytes: Uint8Array, what: string): Envelope {
  const buf = Buffer.isBuffer(bytes) ? bytes : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const corrupt = (why: string) => new HeadstartError('ARCHIVE_CORRUPT', `${what}: ${why}`);
  if (buf.length < FIXED + TRAILER) throw corrupt(`${buf.length} bytes is too short for an archive object`);
  if (buf.readUInt32LE(0) !== MAGIC) throw corrupt('not a headstart archive object (bad magic)');
  const version = buf.readUInt8(4);
  if (version !== FORMAT_VERSION) throw corrupt(`format version ${version} is not one this build reads (it reads ${FORMAT_VERSION}); upgrade headstart`);
  const kind = buf.readUInt8(5);
  if (kind !== KIND_FULL && kind !== KIND_DELTA && kind !== KIND_MANIFEST) throw corrupt(`unknown object kind ${kind}`);
  if (buf.readUInt16LE(6) !== 0) throw corrupt('reserved bytes are not zero');
  const headLen = buf.readUInt32LE(8);
  if (headLen > MAX_HEADER_BYTES || FIXED + headLen + TRAILER > buf.length) throw corrupt(`header length ${headLen} does not fit in ${buf.length} bytes`);
  const end = buf.length - TRAILER;
  const hash = buf.readBigUInt64LE(end);
  if (hasher.h64(buf.subarray(0, end)) !== hash) throw corrupt('checksum mismatch (torn or damaged object)');
  let header: unknown;
  try {
    header = packr.unpack(buf.subarray(FIXED, FIXED + headLen));
  } catch (cause) {
    throw new HeadstartError('ARCHIVE_CORRUPT', `${what}: header is not valid msgpack`, { cause });
  }
  return { kind, header, payload: buf.subarray(FIXED + headLen, end), hash };
}

/** Shape checks for decoded msgpack: never trust it, never cast it. */
export class Shape {
  constructor(
    private readonly what: string,
    private readonly obj: Record<string, unknown>,
  ) {}

  static of(what: string, value: unknown): Shape {
    if (typeof value !== 'object' || value === null || Array.isArray(value) || value instanceof Uint8Array) {
      throw new HeadstartError('ARCHIVE_CORRUPT', `${what}: header is not a map`);
    }
    return new Shape(what, value as Record<string, unknown>);
  }

  fail(why: string): HeadstartError {
    return new HeadstartError('ARCHIVE_CORRUPT', `${this.what}: ${why}`);
  }

  int(name: string, min = 0, max = Number.MAX_SAFE_INTEGER): number {
    return checkInt(this.obj[name], min, max, () => this.fail(`field ${name} must be an integer in [${min}, ${max}]`));
  }

  str(name: string, max = 1024): string {
    const v = this.obj[name];
    if (typeof v !== 'string' || v.length === 0 || v.length > max) throw this.fail(`field ${name} must be a non-empty string`);
    return v;
  }

  bytes(name: string, length: number): Buffer {
    const v = this.obj[name];
    if (!(v instanceof Uint8Array) || v.length !== length) throw this.fail(`field ${name} must be ${length} bytes`);
    return Buffer.from(v.buffer, v.byteOffset, v.byteLength);
  }

  array(name: string, max: number): unknown[] {
    const v = this.obj[name];
    if (!Array.isArray(v) || v.length > max) throw this.fail(`field ${name} must be a list of at most ${max} items`);
    return v;
  }

  sub(name: string): Shape {
    return Shape.of(`${this.what}.${name}`, this.obj[name]);
  }

  has(name: string): boolean {
    return this.obj[name] !== undefined && this.obj[name] !== null;
  }

  bool(name: string): boolean {
    const v = this.obj[name];
    if (typeof v !== 'boolean') throw this.fail(`field ${name} must be true or false`);
    return v;
  }
}

export function checkInt(v: unknown, min: number, max: number, fail: () => Error): number {
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < min || v > max) throw fail();
  return v;
}

/** Ascending, distinct integers in [0, limit): the block lists of chunk objects. */
export function checkAscending(list: unknown[], limit: number, fail: () => Error): number[] {
  let prev = -1;
  for (const v of list) {
    checkInt(v, prev + 1, limit - 1, fail);
    prev = v as number;
  }
  return list as number[];
}
