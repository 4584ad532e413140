import type { SinkState, SnapshotPoint } from '@headstart/volume';

/**
 * What the archive needs from a volume to archive its snapshot points. A Volume from
 * @headstart/volume satisfies it as is; the narrow type documents exactly which calls the
 * archive makes.
 */
export interface ArchiveSource {
  readonly info: { readonly id: string; readonly size: number; readonly blockSize: number };
  /** Closed points still kept, oldest first. */
  snapshots(): readonly SnapshotPoint[];
  /** The blocks written in snapshot n (its dirty set), ascending. */
  dirtyBlocks(n: number): Iterable<number> & { readonly size: number };
  /** Blocks exactly as of closed point n. */
  readBlocksAt(n: number, firstBlock: number, count: number): Promise<Buffer>;
}

/** A source whose archive sink the archive drives itself (catch-up acknowledges points). */
export interface ArchiveSinkSource extends ArchiveSource {
  sinks(): readonly SinkState[];
  addSink(name: string, options?: { acked?: number }): Promise<SinkState>;
  acknowledge(name: string, n: number): Promise<void>;
}
