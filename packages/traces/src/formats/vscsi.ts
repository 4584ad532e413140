/**
 * VMware vscsi trace, version 1 (CloudPhysics): consecutive 32-byte little-endian records
 * `{ u32 serial; u32 length_bytes; u32 n_sg; u16 scsi_cmd; u16 version; u64 lbn; u64 ts_us }`,
 * lbn in 512-byte sectors, ts_us in microseconds.
 */
import type { TraceOp } from '../types';
import type { RawRecord } from './text';

export const VSCSI_RECORD_BYTES = 32;
const SECTOR = 512;

/** SCSI opcodes: WRITE(10/12/16), READ(10/12/16), UNMAP, SYNCHRONIZE CACHE(10/16). */
function opOf(cmd: number): TraceOp {
  switch (cmd) {
    case 0x2a:
    case 0xaa:
    case 0x8a:
      return 'write';
    case 0x28:
    case 0xa8:
    case 0x88:
      return 'read';
    case 0x42:
      return 'trim';
    case 0x35:
    case 0x91:
      return 'flush';
    default:
      return 'other';
  }
}

/** Decodes one record at `at`, or says why it is not a version-1 record. */
export function decodeVscsi(buf: Uint8Array, at: number): RawRecord | { error: string } {
  const view = new DataView(buf.buffer, buf.byteOffset + at, VSCSI_RECORD_BYTES);
  const length = view.getUint32(4, true);
  const cmd = view.getUint16(12, true);
  const version = view.getUint16(14, true);
  if (version >> 8 !== 1) return { error: `version field 0x${version.toString(16)} is not vscsi version 1` };
  const lbn = view.getBigUint64(16, true);
  const ts = view.getBigUint64(24, true);
  const offset = Number(lbn) * SECTOR;
  if (!Number.isSafeInteger(offset)) return { error: 'lbn is out of range' };
  if (ts > BigInt(Number.MAX_SAFE_INTEGER)) return { error: 'timestamp is out of range' };
  return { t: Number(ts) / 1e6, op: opOf(cmd), offset, length };
}

/** Whether `head` looks like vscsi v1: whole plausible records with monotone-ish times. */
export function looksLikeVscsi(head: Uint8Array): boolean {
  const n = Math.min(8, Math.floor(head.length / VSCSI_RECORD_BYTES));
  if (n === 0) return false;
  for (let i = 0; i < n; i++) {
    const r = decodeVscsi(head, i * VSCSI_RECORD_BYTES);
    if ('error' in r) return false;
  }
  return true;
}
