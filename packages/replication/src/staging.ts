/**
 * The replica's staging store: an LMDB environment of its own next to the replica volume.
 * Received blocks of snapshots not yet committed live here, keyed [n, block], value =
 * xxhash64 (8 bytes LE) + content (empty for a block of zeroes). A resent block (a
 * collision on the source) simply overwrites its record. The replica volume does not
 * change while blocks stage.
 *
 * It also holds the commit's redo journal ('journal' = the point being committed): see
 * replica-target.ts for the commit protocol. The environment runs with noMetaSync (a
 * system crash may lose the last staging transactions, never corrupt the store; staging
 * then simply reports less on resume) and is synced explicitly before a commit relies on it.
 */
import { HeadstartError } from '@headstart/errors';
import { SnapshotDigest, bytesToU64, u64ToBytes } from '@headstart/protocol';
import type { SnapshotPoint } from '@headstart/volume';
import { open, type Database, type RootDatabase } from 'lmdb';

export interface StagedSetInfo {
  readonly hashes: Map<number, bigint>;
  readonly digest: SnapshotDigest;
}

export interface Journal {
  readonly point: SnapshotPoint;
}

function decodeJournal(raw: unknown): Journal {
  const bad = () => new HeadstartError('VOLUME_CORRUPT', 'the replica commit journal is damaged');
  if (typeof raw !== 'object' || raw === null) throw bad();
  const p: unknown = Reflect.get(raw, 'point');
  if (typeof p !== 'object' || p === null) throw bad();
  const field = (k: string): number => {
    const v: unknown = Reflect.get(p, k);
    if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 0) throw bad();
    return v;
  };
  return { point: { n: field('n'), scheduledAt: field('scheduledAt'), closedAt: field('closedAt'), lastSeq: field('lastSeq') } };
}

/** lmdb-js has env.sync (mdb_env_sync, forced) on the root, missing from its typings. */
function envSync(root: RootDatabase): Promise<void> {
  const sync: unknown = Reflect.get(root, 'sync');
  if (typeof sync !== 'function') return root.flushed.then(() => undefined);
  return new Promise((resolve, reject) => {
    sync.call(root, (err?: Error | null) => (err ? reject(err) : resolve()));
  });
}

export class Staging {
  private readonly sets = new Map<number, StagedSetInfo>();
  private lastWrite: Promise<unknown> = Promise.resolve();

  private constructor(
    private readonly root: RootDatabase,
    private readonly blocks: Database<Buffer, [number, number]>,
    private readonly meta: Database<unknown, string>,
  ) {}

  static async open(dir: string): Promise<Staging> {
    const root = open({ path: dir, noMetaSync: true });
    const s = new Staging(root, root.openDB({ name: 'blocks', encoding: 'binary' }), root.openDB({ name: 'meta' }));
    for (const { key, value } of s.blocks.getRange()) {
      if (!Array.isArray(key) || value.length < 8) throw new HeadstartError('VOLUME_CORRUPT', 'a staged block record is damaged');
      const [n, block] = key;
      s.setOf(n).hashes.set(block, bytesToU64(value));
    }
    for (const set of s.sets.values()) for (const [b, h] of set.hashes) set.digest.add(b, h);
    return s;
  }

  private setOf(n: number): StagedSetInfo {
    let set = this.sets.get(n);
    if (!set) {
      set = { hashes: new Map(), digest: new SnapshotDigest() };
      this.sets.set(n, set);
    }
    return set;
  }

  /** Snapshots with staged blocks, ascending. */
  snapshots(): number[] {
    return [...this.sets.keys()].filter((n) => this.sets.get(n)!.hashes.size > 0).sort((a, b) => a - b);
  }

  staged(n: number): StagedSetInfo | undefined {
    return this.sets.get(n);
  }

  /** Stages one block (replacing an earlier version); resolves once it is in LMDB. */
  stage(n: number, block: number, hash: bigint, data: Uint8Array): Promise<unknown> {
    const set = this.setOf(n);
    const old = set.hashes.get(block);
    if (old !== undefined) set.digest.remove(block, old);
    set.hashes.set(block, hash);
    set.digest.add(block, hash);
    const value = Buffer.allocUnsafe(8 + data.length);
    value.writeBigUInt64LE(hash, 0);
    value.set(data, 8);
    this.lastWrite = this.blocks.put([n, block], value);
    return this.lastWrite;
  }

  /** Every stage() so far is in LMDB and synced to disk. */
  async sync(): Promise<void> {
    await this.lastWrite;
    await envSync(this.root);
  }

  journal(): Journal | null {
    const raw = this.meta.get('journal');
    return raw === undefined ? null : decodeJournal(raw);
  }

  /** Marks "committing point": durable before it returns, with every staged block. */
  async writeJournal(point: SnapshotPoint): Promise<void> {
    await this.sync();
    await this.meta.put('journal', { point: { n: point.n, scheduledAt: point.scheduledAt, closedAt: point.closedAt, lastSeq: point.lastSeq } });
    await envSync(this.root);
  }

  /** The staged blocks of n in block order, coalesced into contiguous runs of at most maxBytes. */
  *runs(n: number, blockSize: number, maxBytes: number): Generator<{ block: number; data: Buffer }> {
    let first = -1;
    let parts: Buffer[] = [];
    let bytes = 0;
    const flush = () => {
      const out = { block: first, data: parts.length === 1 ? parts[0] : Buffer.concat(parts, bytes) };
      parts = [];
      bytes = 0;
      return out;
    };
    for (const { key, value } of this.blocks.getRange({ start: [n, 0], end: [n + 1, 0] })) {
      const block = key[1];
      if (value.length !== 8 && value.length !== 8 + blockSize) throw new HeadstartError('VOLUME_CORRUPT', `staged block ${block} of snapshot ${n} has a bad length`);
      const data = value.length === 8 ? Buffer.alloc(blockSize) : value.subarray(8);
      if (parts.length > 0 && (block !== first + parts.length || bytes + blockSize > maxBytes)) yield flush();
      if (parts.length === 0) first = block;
      parts.push(data);
      bytes += blockSize;
    }
    if (parts.length > 0) yield flush();
  }

  /** Drops the journal and the staged blocks of n in one transaction (the end of a commit). */
  async finish(n: number): Promise<void> {
    await this.lastWrite;
    await this.root.transaction(() => {
      this.meta.remove('journal');
      for (const key of this.blocks.getKeys({ start: [n, 0], end: [n + 1, 0] })) this.blocks.remove(key);
    });
    this.sets.delete(n);
  }

  /** Forgets the staged blocks of every snapshot in `ns` (digest mismatch, or already committed). */
  async discard(ns: readonly number[]): Promise<void> {
    if (ns.length === 0) return;
    await this.lastWrite;
    await this.root.transaction(() => {
      for (const n of ns) for (const key of this.blocks.getKeys({ start: [n, 0], end: [n + 1, 0] })) this.blocks.remove(key);
    });
    for (const n of ns) this.sets.delete(n);
  }

  async close(): Promise<void> {
    await this.lastWrite.catch(() => undefined);
    await this.root.close();
  }
}
