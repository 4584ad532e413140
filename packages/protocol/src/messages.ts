/**
 * Every message of the link, one typed definition each. Direction: C = source (client,
 * dials), S = replica (server, listens).
 *
 * Handshake   C HELLO -> S CHALLENGE -> C AUTH -> S RESUME   (mutual HMAC, see auth.ts)
 * Initial     C CHECKSUM_REQ* <-> S CHECKSUM_REPLY*           (only when the replica holds a copy)
 * Stream      C BEGIN(n) BLOCKS(n)* CLOSE(n)  BEGIN(n+1) ...  (in order, one snapshot at a time;
 *             a catch-up's BEGIN(m, from n) skips from n to m, protocol 3)
 * Credit      S STAGED(batch) per BLOCKS, once staged durably  (flow control + throughput)
 * Commit      S ACK(n) after n is committed, or NACK(n) (digest mismatch: n is sent again)
 * Any time    PING/PONG; ERROR then close (code + wsClose from @headstart/errors)
 */

/** Snapshot point as carried on the wire (same fields as the volume's SnapshotPoint). */
export interface WirePoint {
  readonly n: number;
  readonly scheduledAt: number;
  readonly closedAt: number;
  readonly lastSeq: number;
}

/** The source volume's identity, bound into the handshake proofs. */
export interface WireVolume {
  readonly id: string;
  readonly epoch: number;
  readonly size: number;
  readonly blockSize: number;
  /**
   * The consistency group the source closes this volume with (absent: none, or a source
   * older than groups). The replica refuses a stream whose group is not its own volume's:
   * groups that differ between sites would promise an atomicity nobody enforces. Not bound
   * into the proofs (it is configuration, checked, not identity).
   */
  readonly group?: string;
}

export interface HelloMsg {
  readonly type: 'HELLO';
  readonly versionMin: number;
  readonly versionMax: number;
  readonly node: string;
  readonly nonce: Uint8Array;
  readonly volume: WireVolume;
}
export interface ChallengeMsg {
  readonly type: 'CHALLENGE';
  readonly version: number;
  readonly node: string;
  readonly nonce: Uint8Array;
}
export interface AuthMsg {
  readonly type: 'AUTH';
  /** HMAC by the source over both nonces: proves the source knows the secret. */
  readonly proof: Uint8Array;
}
/** What the replica has: the source continues from here (resume never resends staged blocks). */
export interface StagedSet {
  readonly n: number;
  /** 16-byte records: block (u64 LE) then xxhash64 of its staged content (u64 LE). */
  readonly entries: Uint8Array;
}
export interface ResumeMsg {
  readonly type: 'RESUME';
  /** HMAC by the replica over both nonces, sent once the source has proved itself: proves the replica knows the secret. */
  readonly proof: Uint8Array;
  /**
   * The replica volume's epoch before this session (it takes a higher source epoch as the
   * session begins; it fenced a lower one already): the epoch its committed point's history
   * was written under.
   */
  readonly epoch: number;
  readonly committed: WirePoint | null;
  /** True when the replica's image may already hold data (restored copy): compare checksums. */
  readonly haveCopy: boolean;
  readonly staged: readonly StagedSet[];
}
export interface BeginMsg {
  readonly type: 'BEGIN';
  readonly n: number;
  /** 'full': a whole copy of point n (initial sync); 'delta': the dirty set of n over n-1. */
  readonly kind: 'full' | 'delta';
  /**
   * A delta over this earlier point instead of n-1 (protocol 3): a sink that was away catches
   * up, every block written after `from` up to n, as of n; the points between are skipped.
   */
  readonly from?: number;
}
export interface WireBlock {
  readonly block: number;
  /** xxhash64 of the block content. */
  readonly hash: bigint;
  /** blockSize bytes, or empty for a block of zeroes (trim, write-zeroes, sparse). */
  readonly data: Uint8Array;
}
export interface BlocksMsg {
  readonly type: 'BLOCKS';
  readonly n: number;
  /** Per-link batch number, echoed by STAGED. */
  readonly batch: number;
  readonly blocks: readonly WireBlock[];
}
export interface CloseMsg {
  readonly type: 'CLOSE';
  readonly point: WirePoint;
  /** Number of distinct blocks snapshot n consists of (dirty set, or the full copy's sent set). */
  readonly count: number;
  /** Snapshot digest over (block, hash) of all those blocks (see hash.ts). */
  readonly digest: bigint;
}
export interface StagedMsg {
  readonly type: 'STAGED';
  readonly batch: number;
  /** Payload bytes of that batch now staged durably. */
  readonly bytes: number;
}
export interface AckMsg {
  readonly type: 'ACK';
  readonly n: number;
}
export interface NackMsg {
  readonly type: 'NACK';
  readonly n: number;
  readonly code: string;
  readonly message: string;
}
export interface ErrorMsg {
  readonly type: 'ERROR';
  readonly code: string;
  readonly message: string;
}
export interface ChecksumReqMsg {
  readonly type: 'CHECKSUM_REQ';
  readonly id: number;
  readonly first: number;
  readonly count: number;
  /** Blocks per range; one hash per range comes back. */
  readonly rangeBlocks: number;
}
export interface ChecksumReplyMsg {
  readonly type: 'CHECKSUM_REPLY';
  readonly id: number;
  /** 8 bytes (u64 LE) per range, in order. */
  readonly hashes: Uint8Array;
}
export interface PingMsg {
  readonly type: 'PING';
  readonly t: number;
}
export interface PongMsg {
  readonly type: 'PONG';
  readonly t: number;
}

export type Message =
  | HelloMsg | ChallengeMsg | AuthMsg | ResumeMsg | BeginMsg | BlocksMsg | CloseMsg | StagedMsg
  | AckMsg | NackMsg | ErrorMsg | ChecksumReqMsg | ChecksumReplyMsg | PingMsg | PongMsg;
export type MessageType = Message['type'];
export type MessageOf<T extends MessageType> = Extract<Message, { type: T }>;
