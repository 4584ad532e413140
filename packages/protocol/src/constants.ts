/**
 * Named limits of the link protocol. Every limit is checked on the raw frame BEFORE
 * msgpack decoding, so a hostile peer cannot make us allocate more than these.
 */

/** Protocol versions this build speaks; the handshake picks the highest both share. */
/** 2: the replica proves the secret after the source (in RESUME, not CHALLENGE): auth.ts. */
export const PROTOCOL_VERSION_MIN = 2;
/** 3: BEGIN may carry `from`: a delta that skips points (a sink catching up after an absence). */
export const PROTOCOL_VERSION_MAX = 3;
/** The first protocol version with BEGIN's `from`. */
export const PROTOCOL_CATCH_UP = 3;

/** Bytes of block payload in one BLOCKS frame: 1 MiB keeps ws frames cheap to buffer
 * while amortising per-frame costs (measured: 1 MiB messages reach ~320 MB/s on loopback). */
export const MAX_BLOCKS_PAYLOAD = 1024 * 1024;
/** Largest block size a volume may have (volume package: 512 B to 1 MiB). */
export const MAX_BLOCK_SIZE = 1024 * 1024;
/** Entries in one BLOCKS frame (bounds per-entry overhead for 512 B blocks). */
export const MAX_BLOCKS_PER_FRAME = 4096;
/** Slack for msgpack structure around payloads. */
const FRAME_OVERHEAD = 64 * 1024;
/** A BLOCKS frame: payload + per-entry index/hash/headers. */
export const MAX_BLOCKS_FRAME = Math.max(MAX_BLOCKS_PAYLOAD, MAX_BLOCK_SIZE) + MAX_BLOCKS_PER_FRAME * 32 + FRAME_OVERHEAD;
/** RESUME lists staged blocks as 16-byte records: 4 Mi entries = 16 GiB staged at 4 KiB. */
export const MAX_RESUME_ENTRIES = 4 * 1024 * 1024;
export const MAX_RESUME_FRAME = MAX_RESUME_ENTRIES * 16 + FRAME_OVERHEAD;
/** Staged points one RESUME may list (a replica holding more reports the lowest and drops the rest). */
export const MAX_RESUME_STAGED = 16;
/**
 * Points a source ships ahead of the replica's acknowledgements (begun, not yet acknowledged).
 * Without a bound a replica whose commits wait (a consistency group waiting for a slow
 * member, a slow disk) staged point after point, and once it held more than RESUME may list,
 * every reconnection failed: the link was stuck for good.
 */
export const MAX_POINTS_AHEAD = 8;
/** Range hashes in one CHECKSUM_REPLY. */
export const MAX_CHECKSUM_RANGES = 65536;
export const MAX_CHECKSUM_FRAME = MAX_CHECKSUM_RANGES * 8 + FRAME_OVERHEAD;
/** Every control message (hello, close, ack, error...) fits in this. */
export const MAX_CONTROL_FRAME = 16 * 1024;
/** The largest frame of any kind: the WebSocket's maxPayload is set just above it. */
export const MAX_FRAME = Math.max(MAX_BLOCKS_FRAME, MAX_RESUME_FRAME, MAX_CHECKSUM_FRAME);

/** Nonce length for the challenge-response handshake (256 bits, fresh per connection). */
export const NONCE_BYTES = 32;
/** HMAC-SHA256 output. */
export const PROOF_BYTES = 32;
/** A handshake not finished by then is dropped (LINK_TIMEOUT). */
export const HANDSHAKE_TIMEOUT_MS = 10_000;
/** Longest text field (node names, error messages) we accept. */
export const MAX_TEXT = 1024;
