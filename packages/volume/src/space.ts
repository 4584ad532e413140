/**
 * Room on the volume's file system, checked before anything is committed to LMDB.
 *
 * LMDB must never be the one to find the disk full: lmdb-js 3.5.6 formats its page-write
 * error into a 100-byte buffer that the message can overrun (mdb.c, mdb_page_flush), and a
 * node that hit it died of heap corruption ("malloc_consolidate(): invalid chunk size")
 * moments later. So the volume refuses, with VOLUME_NO_SPACE, any write that would leave
 * less than a reserve free: 2 % of the file system, at least 1 MiB, at most 64 MiB. A
 * quarter of that reserve is kept for what must go on when writes cannot (closing snapshot
 * points, sinks' acknowledgements, trimming the log), each a few LMDB pages. Space another
 * process takes between the check and the commit comes out of the reserve.
 *
 * Counted against it: a write's log entry, the copies of blocks it overwrites (copy-on-
 * write), and its bytes in the sparse image, until they are written (an overwrite of
 * allocated blocks needs none, but telling costs a syscall per write; the reserve is
 * what the caution costs).
 */
import { statfsSync } from 'node:fs';
import { HeadstartError } from '@headstart/errors';

const MiB = 1 << 20;

export class SpaceGuard {
  private readonly writeReserve: number;
  private readonly metaReserve: number;
  /** Bytes of writes checked here and not yet written (their blocks may fill holes). */
  private pending = 0;

  constructor(private readonly dir: string) {
    const total = this.free(true);
    this.writeReserve = total === null ? 0 : Math.min(64 * MiB, Math.max(MiB, Math.round(total * 0.02)));
    this.metaReserve = this.writeReserve / 4;
  }

  /** Free bytes for an unprivileged writer (or the file system's size), null if the OS cannot say. */
  private free(size = false): number | null {
    try {
      const s = statfsSync(this.dir);
      return (size ? s.blocks : s.bavail) * s.bsize;
    } catch {
      return null;
    }
  }

  private check(reserve: number, bytes: number, what: string): void {
    const free = this.free();
    if (free === null) return;
    const left = free - this.pending - bytes;
    if (left < reserve) {
      throw new HeadstartError('VOLUME_NO_SPACE', `${what}: no space left on device (${(Math.max(0, free) / MiB).toFixed(1)} MiB free, ${(reserve / MiB).toFixed(1)} MiB of it kept for headstart's own records)`);
    }
  }

  /** Before committing writes' log entries: their LMDB bytes, and the image bytes they will add. */
  forWrites(lmdbBytes: number, imageBytes: number, what: string): void {
    this.check(this.writeReserve, lmdbBytes + imageBytes, what);
  }

  /** Free bytes now (null if the OS cannot say), the reserve below which writes are refused, and the level below which the disk is nearly full (4 reserves). */
  room(): { freeBytes: number | null; reserveBytes: number; warnBytes: number } {
    return { freeBytes: this.free(), reserveBytes: this.writeReserve, warnBytes: 4 * this.writeReserve };
  }

  /** Before a small metadata commit (a close, an acknowledgement, a trim). */
  forMetadata(what: string): void {
    this.check(this.metaReserve, 0, what);
  }

  /** Bytes allowed by forWrites and about to be written (the volume's image, staged blocks): they count until writeDone. */
  writeStarted(bytes: number): void {
    this.pending += bytes;
  }

  writeDone(bytes: number): void {
    this.pending = Math.max(0, this.pending - bytes);
  }
}
