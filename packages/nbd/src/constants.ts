/**
 * Numbers of the NBD protocol (NetworkBlockDevice/nbd doc/proto.md) and our own limits.
 * Every wire constant lives here, named as the spec names it, so the parser and the
 * connection read like the spec.
 */

// --- magics (spec: "Handshake" and "Transmission") ---
/** 'NBDMAGIC', the first 8 bytes the server sends. */
export const NBDMAGIC = 0x4e42444d41474943n;
/** 'IHAVEOPT': the newstyle magic, sent by the server and in front of every client option. */
export const IHAVEOPT = 0x49484156454f5054n;
/** Magic of every option reply in fixed newstyle. */
export const OPTION_REPLY_MAGIC = 0x3e889045565a9n;
export const REQUEST_MAGIC = 0x25609513;
export const SIMPLE_REPLY_MAGIC = 0x67446698;
export const STRUCTURED_REPLY_MAGIC = 0x668e33ef;

// --- handshake flags (server, 16 bits) and client flags (32 bits) ---
export const NBD_FLAG_FIXED_NEWSTYLE = 1 << 0;
export const NBD_FLAG_NO_ZEROES = 1 << 1;
export const NBD_FLAG_C_FIXED_NEWSTYLE = 1 << 0;
export const NBD_FLAG_C_NO_ZEROES = 1 << 1;
/** A client setting any other bit MUST be dropped (spec: "Client flags"). */
export const KNOWN_CLIENT_FLAGS = NBD_FLAG_C_FIXED_NEWSTYLE | NBD_FLAG_C_NO_ZEROES;

// --- transmission flags (16 bits) ---
export const NBD_FLAG_HAS_FLAGS = 1 << 0;
export const NBD_FLAG_READ_ONLY = 1 << 1;
export const NBD_FLAG_SEND_FLUSH = 1 << 2;
export const NBD_FLAG_SEND_FUA = 1 << 3;
export const NBD_FLAG_SEND_TRIM = 1 << 5;
export const NBD_FLAG_SEND_WRITE_ZEROES = 1 << 6;
export const NBD_FLAG_CAN_MULTI_CONN = 1 << 8;

// --- options ---
export const NBD_OPT_EXPORT_NAME = 1;
export const NBD_OPT_ABORT = 2;
export const NBD_OPT_LIST = 3;
export const NBD_OPT_STARTTLS = 5;
export const NBD_OPT_INFO = 6;
export const NBD_OPT_GO = 7;
export const NBD_OPT_STRUCTURED_REPLY = 8;
export const NBD_OPT_LIST_META_CONTEXT = 9;
export const NBD_OPT_SET_META_CONTEXT = 10;

// --- option replies ---
export const NBD_REP_ACK = 1;
export const NBD_REP_SERVER = 2;
export const NBD_REP_INFO = 3;
export const NBD_REP_META_CONTEXT = 4;
const ERR = 0x80000000;
export const NBD_REP_ERR_UNSUP = ERR + 1;
export const NBD_REP_ERR_INVALID = ERR + 3;
export const NBD_REP_ERR_UNKNOWN = ERR + 6;
export const NBD_REP_ERR_SHUTDOWN = ERR + 7;
export const NBD_REP_ERR_TOO_BIG = ERR + 9;

// --- NBD_REP_INFO types ---
export const NBD_INFO_EXPORT = 0;
export const NBD_INFO_NAME = 1;
export const NBD_INFO_DESCRIPTION = 2;
export const NBD_INFO_BLOCK_SIZE = 3;

// --- commands and command flags ---
export const NBD_CMD_READ = 0;
export const NBD_CMD_WRITE = 1;
export const NBD_CMD_DISC = 2;
export const NBD_CMD_FLUSH = 3;
export const NBD_CMD_TRIM = 4;
export const NBD_CMD_WRITE_ZEROES = 6;
export const NBD_CMD_BLOCK_STATUS = 7;
export const NBD_CMD_FLAG_FUA = 1 << 0;
export const NBD_CMD_FLAG_NO_HOLE = 1 << 1;
/** NBD_CMD_BLOCK_STATUS: one extent per context, no longer than the request. */
export const NBD_CMD_FLAG_REQ_ONE = 1 << 3;

// --- structured replies ---
export const NBD_REPLY_FLAG_DONE = 1 << 0;
export const NBD_REPLY_TYPE_NONE = 0;
export const NBD_REPLY_TYPE_OFFSET_DATA = 1;
export const NBD_REPLY_TYPE_BLOCK_STATUS = 5;
export const NBD_REPLY_TYPE_ERROR = (1 << 15) + 1;

// --- metadata contexts (spec: "Metadata querying", "The base: metadata namespace") ---
/** The one context the spec defines; the only one we offer. */
export const BASE_ALLOCATION = 'base:allocation';
/** The namespace alone: a wildcard for NBD_OPT_LIST_META_CONTEXT, ignored by SET. */
export const BASE_NAMESPACE = 'base:';
/** base:allocation flags. Neither is ever set by us (see connection.ts, NBD_CMD_BLOCK_STATUS). */
export const NBD_STATE_HOLE = 1 << 0;
export const NBD_STATE_ZERO = 1 << 1;

// --- error numbers a client sees (spec: "Error values") ---
export const NBD_EPERM = 1;
export const NBD_EIO = 5;
export const NBD_ENOMEM = 12;
export const NBD_EINVAL = 22;
export const NBD_ENOSPC = 28;
export const NBD_EOVERFLOW = 75;
export const NBD_ENOTSUP = 95;
export const NBD_ESHUTDOWN = 108;

// --- sizes on the wire ---
export const CLIENT_FLAGS_SIZE = 4;
export const OPTION_HEADER_SIZE = 16;
export const REQUEST_HEADER_SIZE = 28;
export const SIMPLE_REPLY_SIZE = 16;
export const STRUCTURED_HEADER_SIZE = 20;

// --- our limits ---
/**
 * Largest READ/WRITE payload we accept: the "maximum block size" we advertise. qemu and
 * libnbd send at most 32 MiB per request; a larger WRITE cannot be buffered safely, so it
 * ends that connection (the spec allows a hard disconnect for it).
 */
export const DEFAULT_MAX_REQUEST = 32 * 1024 * 1024;
/**
 * Largest option payload we read into memory. Option data is an export name (at most
 * 4096 bytes by the spec) plus a few info requests; anything longer is skipped unread and
 * answered with NBD_REP_ERR_TOO_BIG, so a hostile client cannot make us buffer it.
 */
export const MAX_OPTION_DATA = 16 * 1024;
/**
 * Bytes of write payload and pending read data one connection may hold before we stop
 * reading its socket. Must exceed DEFAULT_MAX_REQUEST so one maximal request always fits.
 */
export const DEFAULT_MAX_INFLIGHT_BYTES = 64 * 1024 * 1024;
/** Requests in flight per connection before we stop reading (bounds per-request overhead). */
export const DEFAULT_MAX_INFLIGHT_REQUESTS = 512;
/** Replies queued in the socket beyond this many bytes pause reading until it drains. */
export const SOCKET_HIGH_WATER = 16 * 1024 * 1024;
/** A client that has not finished the handshake in this time is dropped. */
export const DEFAULT_HANDSHAKE_TIMEOUT_MS = 30_000;
/** How long stop()/removeExport() wait for in-flight requests before dropping clients. */
export const DEFAULT_DRAIN_TIMEOUT_MS = 10_000;
