/**
 * Encoders for everything the server sends, one function per message of the spec. The
 * parser (parser.ts) owns the other direction. Every function returns a fresh buffer
 * (small ones come from Node's pool, so this is cheap).
 */
import {
  IHAVEOPT,
  NBD_FLAG_FIXED_NEWSTYLE,
  NBD_FLAG_NO_ZEROES,
  NBD_INFO_BLOCK_SIZE,
  NBD_INFO_DESCRIPTION,
  NBD_INFO_EXPORT,
  NBD_INFO_NAME,
  NBD_REPLY_FLAG_DONE,
  NBD_REPLY_TYPE_BLOCK_STATUS,
  NBD_REPLY_TYPE_ERROR,
  NBD_REPLY_TYPE_OFFSET_DATA,
  NBDMAGIC,
  OPTION_REPLY_MAGIC,
  SIMPLE_REPLY_MAGIC,
  SIMPLE_REPLY_SIZE,
  STRUCTURED_HEADER_SIZE,
  STRUCTURED_REPLY_MAGIC,
} from './constants';

const TWO_32 = 4294967296;

function writeU64(buf: Buffer, value: number, at: number): void {
  buf.writeUInt32BE(Math.floor(value / TWO_32), at);
  buf.writeUInt32BE(value >>> 0, at + 4);
}

/** NBDMAGIC, IHAVEOPT, handshake flags: the first thing a client reads. */
export function encodeGreeting(): Buffer {
  const buf = Buffer.allocUnsafe(18);
  buf.writeBigUInt64BE(NBDMAGIC, 0);
  buf.writeBigUInt64BE(IHAVEOPT, 8);
  buf.writeUInt16BE(NBD_FLAG_FIXED_NEWSTYLE | NBD_FLAG_NO_ZEROES, 16);
  return buf;
}

/** A fixed-newstyle option reply: magic, option, reply type, length, data. */
export function encodeOptionReply(option: number, type: number, data?: Buffer): Buffer {
  const length = data?.length ?? 0;
  const buf = Buffer.allocUnsafe(20 + length);
  buf.writeBigUInt64BE(OPTION_REPLY_MAGIC, 0);
  buf.writeUInt32BE(option, 8);
  buf.writeUInt32BE(type, 12);
  buf.writeUInt32BE(length, 16);
  if (data) data.copy(buf, 20);
  return buf;
}

/** Data of NBD_REP_SERVER (one export in NBD_OPT_LIST): name length, name, description. */
export function encodeServerEntry(name: string, description = ''): Buffer {
  const nameBytes = Buffer.from(name, 'utf8');
  const descBytes = Buffer.from(description, 'utf8');
  const buf = Buffer.allocUnsafe(4 + nameBytes.length + descBytes.length);
  buf.writeUInt32BE(nameBytes.length, 0);
  nameBytes.copy(buf, 4);
  descBytes.copy(buf, 4 + nameBytes.length);
  return buf;
}

/** Data of NBD_REP_INFO / NBD_INFO_EXPORT: size and transmission flags. */
export function encodeInfoExport(size: number, transmissionFlags: number): Buffer {
  const buf = Buffer.allocUnsafe(12);
  buf.writeUInt16BE(NBD_INFO_EXPORT, 0);
  writeU64(buf, size, 2);
  buf.writeUInt16BE(transmissionFlags, 10);
  return buf;
}

export function encodeInfoText(type: typeof NBD_INFO_NAME | typeof NBD_INFO_DESCRIPTION, text: string): Buffer {
  const bytes = Buffer.from(text, 'utf8');
  const buf = Buffer.allocUnsafe(2 + bytes.length);
  buf.writeUInt16BE(type, 0);
  bytes.copy(buf, 2);
  return buf;
}

export function encodeInfoBlockSize(minimum: number, preferred: number, maximum: number): Buffer {
  const buf = Buffer.allocUnsafe(14);
  buf.writeUInt16BE(NBD_INFO_BLOCK_SIZE, 0);
  buf.writeUInt32BE(minimum, 2);
  buf.writeUInt32BE(preferred, 6);
  buf.writeUInt32BE(maximum, 10);
  return buf;
}

/** Data of NBD_REP_META_CONTEXT: context id (0 in a LIST reply, as the spec asks), name. */
export function encodeMetaContext(id: number, name: string): Buffer {
  const nameBytes = Buffer.from(name, 'utf8');
  const buf = Buffer.allocUnsafe(4 + nameBytes.length);
  buf.writeUInt32BE(id, 0);
  nameBytes.copy(buf, 4);
  return buf;
}

/** The reply to NBD_OPT_EXPORT_NAME: size, transmission flags, 124 zeroes unless NO_ZEROES. */
export function encodeExportNameReply(size: number, transmissionFlags: number, noZeroes: boolean): Buffer {
  const buf = Buffer.alloc(noZeroes ? 10 : 134);
  writeU64(buf, size, 0);
  buf.writeUInt16BE(transmissionFlags, 8);
  return buf;
}

/** A simple reply (16 bytes) written at `at` of `buf` (the connection's reply slab). */
export function writeSimpleReply(buf: Buffer, at: number, error: number, handleHi: number, handleLo: number): void {
  buf.writeUInt32BE(SIMPLE_REPLY_MAGIC, at);
  buf.writeUInt32BE(error, at + 4);
  buf.writeUInt32BE(handleHi, at + 8);
  buf.writeUInt32BE(handleLo, at + 12);
}

export function encodeSimpleReply(error: number, handleHi: number, handleLo: number): Buffer {
  const buf = Buffer.allocUnsafe(SIMPLE_REPLY_SIZE);
  writeSimpleReply(buf, 0, error, handleHi, handleLo);
  return buf;
}

function writeStructuredHeader(buf: Buffer, at: number, flags: number, type: number, handleHi: number, handleLo: number, length: number): void {
  buf.writeUInt32BE(STRUCTURED_REPLY_MAGIC, at);
  buf.writeUInt16BE(flags, at + 4);
  buf.writeUInt16BE(type, at + 6);
  buf.writeUInt32BE(handleHi, at + 8);
  buf.writeUInt32BE(handleLo, at + 12);
  buf.writeUInt32BE(length, at + 16);
}

/**
 * Header of the one chunk that answers a successful READ when structured replies are on:
 * NBD_REPLY_TYPE_OFFSET_DATA with the DONE flag (28 bytes at `at`); the data follows.
 */
export function writeReadChunkHeader(buf: Buffer, at: number, handleHi: number, handleLo: number, offset: number, dataLength: number): void {
  writeStructuredHeader(buf, at, NBD_REPLY_FLAG_DONE, NBD_REPLY_TYPE_OFFSET_DATA, handleHi, handleLo, 8 + dataLength);
  writeU64(buf, offset, at + STRUCTURED_HEADER_SIZE);
}

export const READ_CHUNK_HEADER_SIZE = STRUCTURED_HEADER_SIZE + 8;

/**
 * The one chunk that answers a successful BLOCK_STATUS for one context: an
 * NBD_REPLY_TYPE_BLOCK_STATUS with the DONE flag, the context id and a single descriptor
 * (extent length, status flags); BLOCK_STATUS_CHUNK_SIZE bytes at `at`.
 */
export function writeBlockStatusChunk(buf: Buffer, at: number, handleHi: number, handleLo: number, contextId: number, extentLength: number, status: number): void {
  writeStructuredHeader(buf, at, NBD_REPLY_FLAG_DONE, NBD_REPLY_TYPE_BLOCK_STATUS, handleHi, handleLo, 12);
  buf.writeUInt32BE(contextId, at + STRUCTURED_HEADER_SIZE);
  buf.writeUInt32BE(extentLength, at + STRUCTURED_HEADER_SIZE + 4);
  buf.writeUInt32BE(status, at + STRUCTURED_HEADER_SIZE + 8);
}

export const BLOCK_STATUS_CHUNK_SIZE = STRUCTURED_HEADER_SIZE + 12;

/** A final NBD_REPLY_TYPE_ERROR chunk: errno plus a message for a human. */
export function encodeErrorChunk(handleHi: number, handleLo: number, error: number, message: string): Buffer {
  const text = Buffer.from(message.slice(0, 1024), 'utf8');
  const buf = Buffer.allocUnsafe(STRUCTURED_HEADER_SIZE + 6 + text.length);
  writeStructuredHeader(buf, 0, NBD_REPLY_FLAG_DONE, NBD_REPLY_TYPE_ERROR, handleHi, handleLo, 6 + text.length);
  buf.writeUInt32BE(error, STRUCTURED_HEADER_SIZE);
  buf.writeUInt16BE(text.length, STRUCTURED_HEADER_SIZE + 4);
  text.copy(buf, STRUCTURED_HEADER_SIZE + 6);
  return buf;
}
