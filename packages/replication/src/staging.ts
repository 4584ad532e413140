/**
 * The replica's staging store: an LMDB environment of its own next to the replica volume.
 * Received blocks of snapshots not yet committed live here as RUN records: key
 * [n, firstBlock, gen], value = the content of contiguous blocks (or, for a run of zero
 * blocks, its block count as u32 LE: 4 bytes, shorter than any block). One record per run
 * instead of one per block made staging ~3x cheaper, and commit's read-back and cleanup
 * far cheaper. `gen` grows with every record written; a block resent later (a collision
 * on the source) lands in a newer record, and the copy in the record with the highest gen
 * is the live one (tracked in memory, rebuilt on open). Hashes are recomputed on open
 * (xxhash runs at GB/s). The replica volume does not change while blocks stage.
 *
 * It also holds the commit's redo journal ('journal' = the point being committed): see
 * replica-target.ts for the commit protocol.
 *
 * Durability: staging is only a cache of what the source can send again, so LMDB runs with
 * noSync (an fsync per staging transaction stalled the link for hundreds of ms on a busy
 * disk). What must survive is the journal with the staged set it points to, so:
 *   - before the first unsynced write, a marker file `unsynced` (holding the kernel's boot
 *     id) is made durable; every explicit sync (env sync) removes it durably;
 *   - the journal is written and synced under the marker, and no staging write happens
 *     from then until the commit's final transaction is synced (writes wait on a gate);
 *   - on open, a marker from ANOTHER boot means the machine went down with unsynced LMDB
 *     pages, which may be torn: the store is wiped (nothing in it was needed: either no
 *     journal was live, or its point is already recorded on the volume). A marker from this
 *     boot means only our process died; the kernel kept every page, the store is intact.
 */
import { HeadstartError } from '@headstart/errors';
import { SnapshotDigest, blockHash, zeroBlockHash } from '@headstart/protocol';
import type { SnapshotPoint } from '@headstart/volume';
import { closeSync, existsSync, fsyncSync, openSync, readFileSync, rmSync, unlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { open, type Database, type RootDatabase } from 'lmdb';

function bootId(): string {
  try {
    return readFileSync('/proc/sys/kernel/random/boot_id', 'utf8').trim();
  } catch {
    return 'unknown'; // no boot id: treat every leftover marker as a reboot (wipe: safe, just slower)
  }
}

function fsyncPath(path: string): void {
  const fd = openSync(path, 'r');
  try {
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}

export interface StagedSetInfo {
  readonly hashes: Map<number, bigint>;
  readonly digest: SnapshotDigest;
  /** block -> gen of the record holding its live copy. */
  readonly owner: Map<number, number>;
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
  private lastStaged: Promise<unknown> = Promise.resolve();
  private marked = false;
  /** Set while a commit is live: staging writes wait for it (see the header). */
  private gate: Promise<void> | null = null;
  private openGate: (() => void) | null = null;
  private gen = 0;

  private constructor(
    private readonly dir: string,
    private readonly root: RootDatabase,
    private readonly blockSize: number,
    private readonly blocks: Database<Buffer, [number, number, number]>,
    private readonly meta: Database<unknown, string>,
  ) {}

  static async open(dir: string, blockSize: number): Promise<Staging> {
    const marker = join(dir, 'unsynced');
    if (existsSync(marker)) {
      const boot = readFileSync(marker, 'utf8').trim();
      if (boot !== bootId() || boot === 'unknown') rmSync(dir, { recursive: true, force: true });
    }
    // A large map from the start: growing it while a big snapshot stages remaps the whole
    // store again and again (measured: 512 MiB staged in half the time). It is address
    // space only; the file grows with what is stored.
    const root = open({ path: dir, noSync: true, mapSize: 2 ** 40 });
    const s = new Staging(dir, root, blockSize, root.openDB({ name: 'runs', encoding: 'binary' }), root.openDB({ name: 'meta' }));
    s.marked = existsSync(marker);
    for (const { key, value } of s.blocks.getRange()) {
      const [n, first, gen] = s.checkRecord(key, value);
      s.gen = Math.max(s.gen, gen);
      const set = s.setOf(n);
      s.forEachBlock(first, value, (block, data) => {
        if ((set.owner.get(block) ?? -1) > gen) return;
        set.owner.set(block, gen);
        set.hashes.set(block, data === null ? zeroBlockHash(blockSize) : blockHash(data));
      });
    }
    for (const set of s.sets.values()) for (const [b, h] of set.hashes) set.digest.add(b, h);
    return s;
  }

  private checkRecord(key: unknown, value: Buffer): [number, number, number] {
    const bad = () => new HeadstartError('VOLUME_CORRUPT', 'a staged run record is damaged');
    if (!Array.isArray(key) || key.length !== 3 || !key.every((k) => Number.isSafeInteger(k) && k >= 0)) throw bad();
    if (value.length === 4 ? value.readUInt32LE(0) === 0 : value.length === 0 || value.length % this.blockSize !== 0) throw bad();
    return [key[0], key[1], key[2]];
  }

  /** Calls fn for each block of a run record (data null: a zero block). */
  private forEachBlock(first: number, value: Buffer, fn: (block: number, data: Buffer | null) => void): void {
    const bs = this.blockSize;
    if (value.length === 4) {
      const count = value.readUInt32LE(0);
      for (let i = 0; i < count; i++) fn(first + i, null);
      return;
    }
    for (let i = 0; i * bs < value.length; i++) fn(first + i, value.subarray(i * bs, (i + 1) * bs));
  }

  /** Makes the "unsynced writes may exist" marker durable before the first such write. */
  private mark(): void {
    if (this.marked) return;
    writeFileSync(join(this.dir, 'unsynced'), bootId());
    fsyncPath(join(this.dir, 'unsynced'));
    fsyncPath(this.dir);
    this.marked = true;
  }

  /** Forces every LMDB write so far to disk, then drops the marker durably. */
  private async syncAll(): Promise<void> {
    await envSync(this.root);
    if (this.marked) {
      unlinkSync(join(this.dir, 'unsynced'));
      fsyncPath(this.dir);
      this.marked = false;
    }
  }

  private setOf(n: number): StagedSetInfo {
    let set = this.sets.get(n);
    if (!set) {
      set = { hashes: new Map(), digest: new SnapshotDigest(), owner: new Map() };
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

  /**
   * Stages a batch of blocks of snapshot n (replacing earlier versions) in one synchronous
   * LMDB transaction: with noSync it costs ~3 ms per 1 MiB and has no queueing latency
   * (async puts measured ~0.5 s of latency under load, which starved the link window).
   * Resolves at once, or when the commit gate opens.
   */
  stage(n: number, blocks: readonly { block: number; hash: bigint; data: Uint8Array }[]): Promise<unknown> {
    const set = this.setOf(n);
    for (const { block, hash } of blocks) {
      const old = set.hashes.get(block);
      if (old !== undefined) set.digest.remove(block, old);
      set.hashes.set(block, hash);
      set.digest.add(block, hash);
    }
    // Cut the batch into runs of adjacent blocks of one kind (data or zero); one record each.
    const records: { first: number; gen: number; value: Buffer }[] = [];
    const bs = this.blockSize;
    for (let i = 0; i < blocks.length; ) {
      const zero = blocks[i].data.length === 0;
      let j = i + 1;
      while (j < blocks.length && blocks[j].block === blocks[j - 1].block + 1 && (blocks[j].data.length === 0) === zero) j++;
      const gen = ++this.gen;
      let value: Buffer;
      if (zero) {
        value = Buffer.alloc(4);
        value.writeUInt32LE(j - i);
      } else if (j - i === 1) {
        const d = blocks[i].data;
        value = Buffer.from(d.buffer, d.byteOffset, d.length);
      } else {
        value = Buffer.allocUnsafe((j - i) * bs);
        for (let k = i; k < j; k++) value.set(blocks[k].data, (k - i) * bs);
      }
      for (let k = i; k < j; k++) set.owner.set(blocks[k].block, gen);
      records.push({ first: blocks[i].block, gen, value });
      i = j;
    }
    const write = () => {
      this.mark();
      this.root.transactionSync(() => {
        for (const r of records) this.blocks.putSync([n, r.first, r.gen], r.value);
      });
    };
    if (this.gate) this.lastStaged = this.gate.then(write);
    else {
      write();
      this.lastStaged = Promise.resolve();
    }
    return this.lastStaged;
  }

  /** Every stage() so far is in LMDB. */
  async settled(): Promise<void> {
    await this.lastStaged;
  }

  journal(): Journal | null {
    const raw = this.meta.get('journal');
    return raw === undefined ? null : decodeJournal(raw);
  }

  /** Marks "committing point": durable, with every staged block, before it returns. From here
   * until finish(), staging writes wait. */
  async writeJournal(point: SnapshotPoint): Promise<void> {
    if (!this.gate) this.gate = new Promise((r) => (this.openGate = r));
    await this.syncAll();
    this.mark();
    await this.meta.put('journal', { point: { n: point.n, scheduledAt: point.scheduledAt, closedAt: point.closedAt, lastSeq: point.lastSeq } });
    await this.syncAll();
  }

  /** The live staged blocks of n as runs of at most maxBytes, in record order (runs are
   * disjoint, so the order they are written in does not matter). */
  *runs(n: number, maxBytes: number): Generator<{ block: number; data: Buffer }> {
    const set = this.sets.get(n);
    if (!set) return;
    const bs = this.blockSize;
    const maxBlocks = Math.max(1, Math.floor(maxBytes / bs));
    for (const { key, value } of this.blocks.getRange({ start: [n], end: [n + 1] })) {
      const [, first, gen] = this.checkRecord(key, value);
      const count = value.length === 4 ? value.readUInt32LE(0) : value.length / bs;
      for (let i = 0; i < count; ) {
        if (set.owner.get(first + i) !== gen) {
          i++;
          continue;
        }
        let j = i + 1;
        while (j < count && j - i < maxBlocks && set.owner.get(first + j) === gen) j++;
        yield { block: first + i, data: value.length === 4 ? Buffer.alloc((j - i) * bs) : value.subarray(i * bs, j * bs) };
        i = j;
      }
    }
  }

  /** Drops the journal and the staged blocks of n in one transaction (the end of a commit),
   * syncs, and lets staging writes go on. */
  async finish(n: number): Promise<void> {
    try {
      this.mark();
      await this.root.transaction(() => {
        this.meta.remove('journal');
        for (const key of this.blocks.getKeys({ start: [n], end: [n + 1] })) this.blocks.remove(key);
      });
      this.sets.delete(n);
      await this.syncAll();
    } finally {
      this.gate = null;
      this.openGate?.();
      this.openGate = null;
    }
  }

  /** Forgets the staged blocks of every snapshot in `ns` (digest mismatch, or already committed). */
  async discard(ns: readonly number[]): Promise<void> {
    if (ns.length === 0) return;
    await this.gate;
    this.mark();
    await this.root.transaction(() => {
      for (const n of ns) for (const key of this.blocks.getKeys({ start: [n], end: [n + 1] })) this.blocks.remove(key);
    });
    for (const n of ns) this.sets.delete(n);
  }

  async close(): Promise<void> {
    await this.lastStaged.catch(() => undefined);
    await this.syncAll().catch(() => undefined);
    await this.root.close();
  }
}
