/** The public shapes of the volume package (see index.ts for the door). */

export type VolumeRole = 'primary' | 'replica';

export interface VolumeInfo {
  readonly id: string;
  /** Export name (NBD), defaults to the id. */
  readonly name: string;
  /** Bytes; a positive multiple of blockSize. */
  readonly size: number;
  /** Bytes; a power of two from 512 B to 1 MiB, fixed for the volume's life. */
  readonly blockSize: number;
  readonly role: VolumeRole;
  /** Generation number; promotion raises it. A lower epoch can never write into a higher one. */
  readonly epoch: number;
}

/** `(volume, n, scheduledAt, lastSeq)`: the volume after every write with seq <= lastSeq. */
export interface SnapshotPoint {
  readonly n: number;
  /** Epoch ms the point was scheduled for (the figure lag is measured against). */
  readonly scheduledAt: number;
  /** Epoch ms the source actually marked it. */
  readonly closedAt: number;
  readonly lastSeq: number;
}

/** One write as the write log records it. */
export interface WriteEntry {
  readonly seq: number;
  readonly offset: number;
  readonly length: number;
  /** Epoch ms. */
  readonly time: number;
}

/** What write listeners see: the entry plus the snapshot it belongs to and its blocks. */
export interface WriteEvent extends WriteEntry {
  /** The open snapshot this write belongs to. */
  readonly snapshot: number;
  readonly firstBlock: number;
  readonly blockCount: number;
  /** 'write' | 'zero' | 'trim' — zero and trim read back as zeroes. */
  readonly kind: 'write' | 'zero' | 'trim';
}

export interface SinkState {
  readonly name: string;
  /** Last snapshot the sink acknowledged (committed), or null if it has none yet. */
  readonly acked: number | null;
  /** For a sink without any point yet: the snapshot its full copy is made of. */
  readonly baseline: number;
  /**
   * For a sink that has points and was away (Volume.rebaseSink): its next delta goes straight
   * from `acked` to this point, covering every point between, whose old content is no
   * longer kept for it. Absent when its next point is simply the one after `acked`.
   */
  readonly catchUpTo?: number;
}

export interface WriteOptions {
  /** Force unit access: durable before the promise resolves. */
  readonly fua?: boolean;
}

/**
 * The block device every front end (NBD, tests, the workload generator) talks to.
 * A Volume implements it; so can anything else that wants to be exported.
 */
export interface BlockDevice {
  readonly size: number;
  readonly blockSize: number;
  readonly readOnly: boolean;
  read(offset: number, length: number): Promise<Buffer>;
  /**
   * Optional: reads `target.length` bytes at `offset` into the caller's buffer, so a front
   * end can reuse its buffers (a fresh 1 MiB buffer per read costs page faults and GC).
   */
  readInto?(offset: number, target: Uint8Array): Promise<void>;
  write(offset: number, data: Uint8Array, options?: WriteOptions): Promise<void>;
  writeZeroes(offset: number, length: number, options?: WriteOptions): Promise<void>;
  trim(offset: number, length: number, options?: WriteOptions): Promise<void>;
  flush(): Promise<void>;
}

/** Injected time source, so tests and the trace replayer can drive time. */
export interface Clock {
  now(): number;
}
