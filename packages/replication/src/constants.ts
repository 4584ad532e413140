/** Named defaults of replication, each with its reason. */

/** What a replica holds for a source beyond its window before cutting it off (memory bound). */
export const MAX_UNSTAGED_BYTES = 4 * 16 * 1024 * 1024;
/** Payload bytes sent and not yet staged by the replica. Bounds the source's memory and
 * what a reconnect can resend; 16 MiB keeps a loopback or LAN link busy (~50 ms at 300 MB/s). */
export const DEFAULT_WINDOW_BYTES = 16 * 1024 * 1024;
/** Blocks read from the volume per read call while shipping a closed point (1 MiB at 4 KiB). */
export const READ_RUN_BYTES = 1024 * 1024;
/**
 * Dirty runs of a closed point this close together are read in one call, the gap read and
 * dropped: one read per scattered 4 KiB block cost a thread-pool round trip each (a point of
 * 405,868 of them, 2 GiB written by fio at random over 4 GiB). Reading 64 KiB more costs
 * less than another read, from the page cache or a disk.
 */
export const READ_MERGE_GAP_BYTES = 64 * 1024;
/** Runs read ahead of the one being framed (memory: READ_AHEAD x READ_RUN_BYTES). */
export const READ_AHEAD = 4;
/** Blocks per checksum range in initial sync: 1 MiB ranges at 4 KiB blocks. */
export const CHECKSUM_RANGE_BLOCKS = 256;
/** Ranges per CHECKSUM_REQ (256 MiB of image at 4 KiB blocks per round trip). */
export const CHECKSUM_RANGES_PER_REQUEST = 256;
/** How often an idle pre-send loop asks the policy again and checks for a close. */
export const PRESEND_TICK_MS = 20;
/**
 * Pre-send only while the open point has at most this many dirty blocks (16 GiB at 4 KiB);
 * a larger point ships at its close. The shipper keeps the open point's pending blocks in a
 * JS Set, in write order, and V8 caps a Set (and a Map) at 2^24 entries: past that, adding
 * throws. A discard of a 100 GiB device (mkfs.ext4 does one), an fstrim that frees as much,
 * or a bulk copy reach it in one point. At 2^22 the Set is ~130 MB; a closed point ships
 * from the volume's compact dirty set, whatever its size.
 */
export const PRESEND_MAX_BLOCKS = 1 << 22;
/** Staged blocks a reconnecting source takes from the replica's RESUME to skip (see reconcile). */
export const KNOWN_MAX_BLOCKS = 1 << 23;
/** Reconnect backoff after a link failure. */
export const RECONNECT_MIN_MS = 100;
export const RECONNECT_MAX_MS = 5_000;
/** Keepalive: a PING this often; no frame for KEEPALIVE_TIMEOUT_MS ends the link (LINK_TIMEOUT). */
export const KEEPALIVE_MS = 5_000;
export const KEEPALIVE_TIMEOUT_MS = 20_000;
/** A rate-capped link may save up this many seconds of its rate while idle (rate.ts, burstFor). */
export const RATE_BURST_SECONDS = 0.25;
/** ...but never less than this (a tiny cap would otherwise cut frames to a block or two). */
export const RATE_BURST_MIN_BYTES = 64 * 1024;
/** Window of the throughput meter (link throughput B from acknowledged bytes). */
export const THROUGHPUT_WINDOW_MS = 5_000;
/**
 * permessage-deflate of a compressed link (SourceOptions.compress), both ends: zlib level 1
 * (fast; block data is often already compressed or random), no context kept between
 * messages (a few KiB per connection instead of 300+), frames under 4 KiB go as they are.
 */
export const LINK_DEFLATE = { threshold: 4096, zlibDeflateOptions: { level: 1 }, serverNoContextTakeover: true, clientNoContextTakeover: true } as const;
/** Payload between two samples of a link's wire bytes per payload byte (SourceSession.wireRatio). */
export const WIRE_RATIO_SAMPLE_BYTES = 256 * 1024;
/**
 * Bounds of that ratio. Deflate of zero-filled blocks reaches ~1/1000, but a link whose data
 * turns incompressible is charged the old ratio until the next sample: at most 1/20 keeps
 * that overrun of the cap under a sample's payload.
 */
export const WIRE_RATIO_MIN = 0.05;
export const WIRE_RATIO_MAX = 2;
