/**
 * Group commit of write-log entries: every write that reaches the log in one turn of the
 * event loop (an NBD client pipelines, so one socket read often carries dozens of WRITEs,
 * and one poll phase delivers several reads) is committed in ONE synchronous LMDB
 * transaction, from setImmediate, i.e. right after the poll phase that delivered them.
 * A microtask would commit once per socket read instead: measured on 1 MiB sequential
 * writes, 4.3 LMDB page writes per request that way against 2.8 with setImmediate.
 *
 * Why not lmdb-js's own asynchronous puts (which batch per event turn too): each put goes
 * through its instruction buffer, a promise of its own and, per batch, a hand-off to a
 * thread-pool worker (uv_queue_work plus a futex wake-up) and back. On a 4 KiB random-write
 * load that hand-off and bookkeeping cost more CPU than the commit itself, and the worker
 * competes for the same thread pool the image file's 1 MiB pwrites use. A commit with
 * noSync only copies a few pages into the page cache (no fsync), so doing it inline is
 * cheap and gives every write of the batch its answer in the same turn.
 *
 * Semantics are those of one put per write: when the promise a caller got resolves, its
 * entry (and the preserved blocks it brought) is committed; if the commit fails, every
 * write of the batch gets the error and none of them is recorded, so none may touch the
 * image (the caller writes the image only after this resolves).
 */
import type { Database, RootDatabase } from 'lmdb';
import type { SpaceGuard } from './space';

/** A preserved copy (copy-on-write) to commit with a write's log entry: key [point, block]. */
export interface PreservedCopy {
  readonly key: [number, number];
  readonly value: Buffer;
}

/** A log entry's (or a preserved copy's key and page overhead's) share of LMDB, generously. */
const LOG_ENTRY_BYTES = 128;
/** LMDB's page size, and the header each run of overflow pages starts with. */
const LMDB_PAGE_BYTES = 4096;
const LMDB_PAGE_HEADER_BYTES = 16;

/**
 * What a value takes in LMDB: one over about half a page goes to overflow pages of its own,
 * whole pages, header included. A preserved 4 KiB block takes two pages, 8 KiB: counted as
 * 4 KiB, the space check before a commit allowed for half of what LMDB grew by (a helper
 * measured 8,249 bytes of file per 4,096-byte value).
 */
function lmdbValueBytes(length: number): number {
  if (length <= LMDB_PAGE_BYTES / 2) return length;
  return Math.ceil((length + LMDB_PAGE_HEADER_BYTES) / LMDB_PAGE_BYTES) * LMDB_PAGE_BYTES;
}

class Batch {
  readonly seqs: number[] = [];
  readonly entries: unknown[] = [];
  readonly copies: PreservedCopy[] = [];
  /** What the batch will take on disk: in LMDB, and in the image once its writes land. */
  lmdbBytes = 0;
  imageBytes = 0;
  readonly done: Promise<void>;
  resolve!: () => void;
  reject!: (err: unknown) => void;

  constructor() {
    this.done = new Promise<void>((resolve, reject) => {
      this.resolve = resolve;
      this.reject = reject;
    });
  }
}

export class LogBatcher {
  private open: Batch | null = null;
  private readonly flushOpen = (): void => this.commit();

  constructor(
    private readonly root: RootDatabase,
    private readonly log: Database<unknown, number>,
    private readonly preserved: Database<Buffer, [number, number]>,
    private readonly space: SpaceGuard,
  ) {}

  /**
   * Adds a write's log entry (and its preserved copies) to the batch of this turn; resolves
   * once that batch is committed. Entries commit in the order they were added. `imageBytes`:
   * what the write will then put in the image (see SpaceGuard; the caller reports it done).
   */
  record(seq: number, entry: unknown, copies: readonly PreservedCopy[] | null, imageBytes: number): Promise<void> {
    let batch = this.open;
    if (batch === null) {
      batch = this.open = new Batch();
      setImmediate(this.flushOpen);
    }
    batch.seqs.push(seq);
    batch.entries.push(entry);
    batch.lmdbBytes += LOG_ENTRY_BYTES;
    batch.imageBytes += imageBytes;
    if (copies !== null) {
      for (const c of copies) {
        batch.copies.push(c);
        batch.lmdbBytes += lmdbValueBytes(c.value.length) + LOG_ENTRY_BYTES;
      }
    }
    return batch.done;
  }

  private commit(): void {
    const batch = this.open;
    if (batch === null) return;
    this.open = null;
    try {
      // Checked first: LMDB must not be the one to find the disk full (space.ts).
      this.space.forWrites(batch.lmdbBytes, batch.imageBytes, 'recording the write in the write log');
      this.root.transactionSync(() => {
        for (const c of batch.copies) this.preserved.putSync(c.key, c.value);
        for (let i = 0; i < batch.seqs.length; i++) this.log.putSync(batch.seqs[i], batch.entries[i]);
      });
    } catch (err) {
      batch.reject(err);
      return;
    }
    this.space.writeStarted(batch.imageBytes);
    batch.resolve();
  }
}
