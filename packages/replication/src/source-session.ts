/**
 * DEV DOCS — the source's side of one link (one volume -> one sink), for one connection.
 *
 * After the handshake the replica says what it has (RESUME: committed point, staged
 * blocks with their hashes). The session reconciles that with the volume's record of the
 * sink, then ships snapshot points strictly in order, never waiting for an ACK to start
 * the next one:
 *   - a point n that is already closed: BEGIN(n), then every block of its dirty set read
 *     exactly as of n (volume.readBlocksAt: preserved copy-on-write data where it has been
 *     overwritten since), then CLOSE(n) with the count and digest of the whole set;
 *   - the open point: the policy picks which written blocks to pre-send and when; a block
 *     written again after it was sent becomes pending again (collision).
 * A block whose hash equals what the replica already staged for n (RESUME, or sent on this
 * connection) is never sent again, so after a reconnect only what was in flight moves
 * twice, and at the close every block's exact content as of n is re-read and compared, so
 * a pre-sent block that changed (even during its read) is always resent. The replica
 * commits n only if its staged set matches the digest; ACK(n) then advances the sink's
 * acknowledged point on the volume (volume.acknowledge), which frees what no sink needs.
 *
 * Flow control: at most `windowBytes` of block payload sent and not yet STAGED by the
 * replica, and a token bucket for the rate limit; so memory is bounded whatever the link.
 */
import { HeadstartError } from '@headstart/errors';
import {
  MAX_BLOCKS_PAYLOAD, MAX_BLOCKS_PER_FRAME, MAX_POINTS_AHEAD, PROTOCOL_CATCH_UP, PROTOCOL_VERSION_MAX, PROTOCOL_VERSION_MIN, SnapshotDigest, SourceInbound,
  blockHash, bytesToU64, computeProof, freshNonce, isZero, rangeHash, verifyProof, zeroBlockHash,
  type FeedStaging, type Message, type ProofInput, type ResumeMsg, type WireBlock, type WireVolume,
} from '@headstart/protocol';
import type { BlockSet, Volume } from '@headstart/volume';
import type WebSocket from 'ws';
import { CHECKSUM_RANGES_PER_REQUEST, CHECKSUM_RANGE_BLOCKS, KEEPALIVE_MS, KEEPALIVE_TIMEOUT_MS, KNOWN_MAX_BLOCKS, PRESEND_MAX_BLOCKS, PRESEND_TICK_MS, READ_AHEAD, READ_MERGE_GAP_BYTES, READ_RUN_BYTES, WIRE_RATIO_MAX, WIRE_RATIO_MIN, WIRE_RATIO_SAMPLE_BYTES } from './constants';

/** A pre-send's place on a shared cap when its point has no scheduled close: after every closed point and every scheduled one. */
const PRESEND_DEADLINE = Number.MAX_SAFE_INTEGER;
import { Link } from './link';
import type { PresendPolicy, PresendView } from './policy';
import type { RateGate, ThroughputMeter } from './rate';

export interface ShippedSnapshot {
  readonly n: number;
  /** Payload bytes sent for n on this connection, resends included: S(n). */
  readonly sentBytes: number;
  /** Block size x blocks of n: M(n). */
  readonly minimalBytes: number;
  /** When CLOSE of n went on this connection (epoch ms), if it did. */
  readonly closeSentAt?: number;
}

export interface SessionContext {
  readonly volume: Volume;
  /** The volume's consistency group, told to the replica in HELLO. */
  readonly group?: string;
  readonly sink: string;
  readonly secret: string | Uint8Array;
  readonly node: string;
  readonly policy: PresendPolicy;
  readonly windowBytes: number;
  /** Pre-send only while the open point has at most this many dirty blocks (PRESEND_MAX_BLOCKS). */
  readonly presendMaxBlocks?: number;
  /** The open point's scheduled close (epoch ms), or null: its pre-sends' deadline on shared caps. */
  readonly nextCloseAt?: () => number | null;
  readonly bucket: RateGate;
  /**
   * Bytes the connection's socket has written so far (after compression; frame, TLS and
   * upgrade headers included), for charging caps in wire bytes (wireRatio); absent: payload.
   */
  readonly wireBytes?: () => number | undefined;
  /** The link's wire bytes per payload byte as its last connection measured it (kept across reconnects); the session updates it. */
  readonly wireRatio?: { value: number };
  readonly meter: ThroughputMeter;
  readonly onAcked: (n: number, shipped: ShippedSnapshot | undefined) => void;
  readonly onReady: () => void;
  /** Pre-sends of open point n stopped: it has more dirty blocks than presendMaxBlocks. */
  readonly onPresendStopped?: (n: number, limit: number) => void;
  /** The replica does not hold the point it acknowledged (why): its sink starts afresh and it is resynchronised. */
  readonly onResync?: (why: string) => void;
  /** BEGIN of a catch-up (a delta from `from` straight to n: Volume.rebaseSink) went out: the sink's target must not move now. */
  readonly onCatchUpBegun?: (from: number, n: number) => void;
}

const EMPTY = new Uint8Array(0);

export class SourceSession {
  readonly link: Link;
  private readonly nonce = freshNonce();
  private readonly wire: WireVolume;
  private resume: ResumeMsg | null = null;
  /** What both proofs cover, once CHALLENGE has come. */
  private proofIn: ProofInput | null = null;
  private resumed!: () => void;
  private readonly resumedP = new Promise<void>((r) => (this.resumed = r));
  /** What the replica holds staged, per snapshot: block -> hash (from RESUME and our own sends). */
  private readonly known = new Map<number, Map<number, bigint>>();
  /** batch -> its payload bytes, its point, and how many of its blocks were new to the sink (not sent for that point before). */
  private readonly inFlight = new Map<number, { bytes: number; n: number; fresh: number }>();
  /** Per point: distinct blocks the replica has confirmed staged (RESUME's, then STAGED). */
  private readonly stagedCount = new Map<number, number>();
  /** The point being shipped now and how it counts its blocks (status only). */
  private current: { n: number; total: () => number | null } | null = null;
  private inFlightBytes = 0;
  private batchSeq = 0;
  private readonly shipped = new Map<number, { sentBytes: number; minimalBytes: number; closeSentAt?: number }>();
  private wake: (() => void) | null = null;
  private readonly checksumWaiters = new Map<number, (hashes: Uint8Array) => void>();
  private checksumSeq = 0;
  private acking: Promise<void> = Promise.resolve();

  constructor(ws: WebSocket, private readonly ctx: SessionContext) {
    const info = ctx.volume.info;
    this.wire = { id: info.id, epoch: info.epoch, size: info.size, blockSize: info.blockSize, ...(ctx.group === undefined ? {} : { group: ctx.group }) };
    this.link = new Link(ws, new SourceInbound(), (m) => this.handle(m));
    ws.on('open', () => this.link.send({ type: 'HELLO', versionMin: PROTOCOL_VERSION_MIN, versionMax: PROTOCOL_VERSION_MAX, node: ctx.node, nonce: this.nonce, volume: this.wire }));
    const keepalive = setInterval(() => {
      if (performance.now() - this.link.lastHeard > KEEPALIVE_TIMEOUT_MS) this.link.fail(new HeadstartError('LINK_TIMEOUT', `replica silent for ${KEEPALIVE_TIMEOUT_MS} ms`));
      else if (this.resume) this.link.send({ type: 'PING', t: Date.now() });
    }, KEEPALIVE_MS);
    void this.link.done.then(() => {
      clearInterval(keepalive);
      this.poke();
    });
  }

  get inFlightPayload(): number {
    return this.inFlightBytes;
  }

  /** The point being shipped and how much of it the sink has staged (status; null when idle). */
  staging(): FeedStaging | null {
    const c = this.current;
    if (c === null) return null;
    return { n: c.n, stagedBlocks: this.stagedCount.get(c.n) ?? 0, totalBlocks: c.total() };
  }
  /** Block payload bytes sent on this connection (resends included). */
  payloadSent = 0;
  /**
   * Socket bytes per payload byte, measured (measureWireRatio) and kept by the link across
   * reconnects (1 without one): caps limit what the link carries, so a send is charged its
   * payload times this. Compressible data on a compressed link then goes as fast as the cap
   * allows on the wire; charged in payload bytes, a cap of 512 KiB/s carried text at
   * 114 KiB/s of wire bytes (replication.test.ts).
   */
  private get wireRatio(): number {
    return this.ctx.wireRatio?.value ?? 1;
  }
  private ratioMark: { payload: number; wire: number; sums: { payload: number; wire: number } } | null = null;
  /** Payload of the BLOCKS frames the WebSocket has written out on this connection. */
  private payloadWritten = 0;

  /**
   * Updates wireRatio from the socket's byte count, every WIRE_RATIO_SAMPLE_BYTES of payload:
   * the ratio of the two sums, each halved at every sample so that the ratio follows the
   * data. Called when the WebSocket has written out the last frame handed to it: the socket's
   * count then holds exactly the frames whose payload payloadWritten holds. (Sampled at the
   * send, a compressed frame's bytes were not counted yet, nor on a plain link the frame
   * itself: when frames grew from a pre-send round's to a closed point's 1 MiB the ratio fell
   * to 0.2-0.4, and the link ran ~25% over its cap for the next few MiB.)
   */
  private measureWireRatio(): void {
    const wire = this.ctx.wireBytes?.();
    if (wire === undefined) return;
    const mark = this.ratioMark;
    if (mark === null) return;
    const payload = this.payloadWritten - mark.payload;
    if (payload < WIRE_RATIO_SAMPLE_BYTES) return;
    const sums = { payload: mark.sums.payload / 2 + payload, wire: mark.sums.wire / 2 + (wire - mark.wire) };
    if (this.ctx.wireRatio) this.ctx.wireRatio.value = Math.min(WIRE_RATIO_MAX, Math.max(WIRE_RATIO_MIN, sums.wire / sums.payload));
    this.ratioMark = { payload: this.payloadWritten, wire, sums };
  }

  private poke(): void {
    const w = this.wake;
    this.wake = null;
    w?.();
  }

  /** Waits for a poke (credit, write, ack, end) or `ms`. */
  private nap(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const t = setTimeout(() => {
        if (this.wake === done) this.wake = null;
        resolve();
      }, ms);
      const done = () => {
        clearTimeout(t);
        resolve();
      };
      this.wake = done;
    });
  }

  private check(): void {
    if (this.link.ended) throw new HeadstartError('LINK_CLOSED', 'link ended');
  }

  private proofInput(version: number, replicaNonce: Uint8Array): ProofInput {
    return { version, sourceNonce: this.nonce, replicaNonce, volume: this.wire };
  }

  private handle(m: Message): void | Promise<void> {
    switch (m.type) {
      case 'CHALLENGE': {
        if (m.version < PROTOCOL_VERSION_MIN || m.version > PROTOCOL_VERSION_MAX) throw new HeadstartError('LINK_VERSION_MISMATCH', `replica chose protocol ${m.version}, this source speaks ${PROTOCOL_VERSION_MIN}-${PROTOCOL_VERSION_MAX}`);
        // We prove first; the replica proves in RESUME (auth.ts says why), and nothing it
        // says is acted on before that proof checks out.
        this.proofIn = this.proofInput(m.version, m.nonce);
        this.link.send({ type: 'AUTH', proof: computeProof(this.ctx.secret, 'source', this.proofIn) });
        return;
      }
      case 'RESUME':
        if (this.proofIn === null || !verifyProof(this.ctx.secret, 'replica', this.proofIn, m.proof)) {
          throw new HeadstartError('LINK_AUTH_FAILED', 'the replica did not prove the pairing secret (wrong secret or a replayed handshake)');
        }
        this.resume = m;
        this.resumed();
        return;
      case 'STAGED': {
        const sent = this.inFlight.get(m.batch);
        if (sent === undefined) throw new HeadstartError('LINK_OUT_OF_ORDER', `STAGED for batch ${m.batch}, which is not in flight`);
        this.inFlight.delete(m.batch);
        this.inFlightBytes -= sent.bytes;
        if (this.stagedCount.has(sent.n) || sent.n === this.current?.n) this.stagedCount.set(sent.n, (this.stagedCount.get(sent.n) ?? 0) + sent.fresh);
        this.ctx.meter.add(sent.bytes);
        this.poke();
        return;
      }
      case 'ACK': {
        // Acks are applied in order, one at a time, without holding up the frames behind them.
        const n = m.n;
        this.acking = this.acking.then(async () => {
          await this.ctx.volume.acknowledge(this.ctx.sink, n);
          for (const k of this.stagedCount.keys()) if (k <= n) this.stagedCount.delete(k);
          const s = this.shipped.get(n);
          this.shipped.delete(n);
          this.ctx.onAcked(n, s === undefined ? undefined : { n, ...s });
        }).catch((err: unknown) => this.link.fail(err instanceof HeadstartError ? err : new HeadstartError('REPL_INTERNAL', String(err))));
        return;
      }
      case 'NACK':
        // The replica dropped its staged copy of n: restart the link; RESUME tells what is left.
        this.link.close(new HeadstartError('REPL_DIGEST_MISMATCH', `replica refused snapshot ${m.n}: ${m.message}`));
        return;
      case 'CHECKSUM_REPLY': {
        const w = this.checksumWaiters.get(m.id);
        if (!w) throw new HeadstartError('LINK_OUT_OF_ORDER', `CHECKSUM_REPLY ${m.id} answers no request`);
        this.checksumWaiters.delete(m.id);
        w(m.hashes);
        return;
      }
      case 'PING':
        this.link.send({ type: 'PONG', t: m.t });
        return;
      default:
        return;
    }
  }

  /** Runs until the link ends; resolves with the reason. */
  async run(): Promise<HeadstartError> {
    await Promise.race([this.resumedP, this.link.done]);
    if (!this.resume) return this.link.done;
    this.ctx.onReady();
    try {
      await this.ship(this.resume);
    } catch (err) {
      if (!this.link.ended) this.link.fail(err instanceof HeadstartError ? err : new HeadstartError('REPL_INTERNAL', `shipping failed: ${(err as Error).message}`, { cause: err }));
    }
    return this.link.done;
  }

  /**
   * Brings the volume's sink record in line with what the replica reports; returns where to
   * start (`from`: a catch-up's delta, from that point straight to n).
   */
  private async reconcile(r: ResumeMsg): Promise<{ n: number; kind: 'full' | 'delta'; haveCopy: boolean; from?: number }> {
    const v = this.ctx.volume;
    const name = this.ctx.sink;
    let s = v.sink(name);
    const c = r.committed?.n ?? null;
    // A point is known by its number *and* when it was taken: after a promotion the new
    // primary numbers its own points on from its committed one, so a replica that followed
    // the old primary further (a third site) can report a number this volume also holds,
    // with other content. Only the same point (same scheduled and close times) is trusted.
    const same = (n: number) => {
      const mine = v.snapshots().find((p) => p.n === n);
      return mine !== undefined && r.committed !== null && mine.scheduledAt === r.committed.scheduledAt && mine.closedAt === r.committed.closedAt;
    };
    let haveCopy = r.haveCopy;
    let fullAt: number | null = null;
    if (s.acked !== null) {
      // The replica does not hold what it acknowledged: its volume was created anew (a new
      // disk) or restored from an older copy, or it followed another primary past this one's
      // point. Its copy is no base for a delta: the sink starts afresh (a full copy, by
      // checksum where the replica holds data), as a new sink would, and the node says so.
      const mine = c === null ? undefined : v.snapshots().find((p) => p.n === c);
      const why =
        c === null ? `holds no point, but acknowledged point ${s.acked}`
        : c < s.acked ? `holds point ${c}, older than point ${s.acked} it acknowledged`
        : c > s.acked && mine === undefined ? `holds point ${c}, which this volume does not hold (it followed another primary further)`
        : mine !== undefined && !same(c) ? `holds a point ${c} taken at ${new Date(r.committed!.scheduledAt).toISOString()}, but this volume's point ${c} was taken at ${new Date(mine.scheduledAt).toISOString()} (another primary's history)`
        : null;
      if (why !== null) {
        await v.removeSink(name);
        s = await v.addSink(name);
        this.ctx.onResync?.(`replica ${why}: resynchronising it from point ${s.baseline}`);
      } else if (c! > s.acked) await this.ackLost(c!);
      s = v.sink(name);
      const version = this.proofIn?.version ?? PROTOCOL_VERSION_MIN;
      if (s.acked !== null && s.catchUpTo !== undefined && version < PROTOCOL_CATCH_UP) {
        // The old content of the points it skips is gone; a replica of an older build cannot
        // take a delta that skips them. A checksum compare brings it to the latest point.
        const { acked, catchUpTo } = s;
        await v.removeSink(name);
        s = await v.addSink(name);
        this.ctx.onResync?.(`replica speaks link protocol ${version}, which cannot take a catch-up from point ${acked} straight to point ${catchUpTo} (the points between are no longer kept for it; upgrade it): resynchronising it by checksum from point ${s.baseline}`);
      }
    }
    if (s.acked === null) {
      if (c !== null) {
        if (c >= s.baseline && same(c)) await this.ackLost(c); // it committed, our record of the ACK was lost
        else if (c >= s.baseline) {
          // It holds a point of another history: not ours, whatever its number. If this
          // volume was promoted over it (a higher epoch: the replica followed the old primary
          // past the point this one was promoted at), this volume's history is the one to
          // keep: resynchronise it by checksum, at a point after its own (a replica takes no
          // full copy older than what it holds). At an epoch not above the replica's, this
          // volume was not promoted over it: most likely it was made anew, its data lost, and
          // the replica holds the only copy. Never overwrite that.
          if (v.info.epoch <= r.epoch) {
            throw new HeadstartError(
              'REPL_DIVERGED',
              `the replica holds point ${c} (taken ${new Date(r.committed!.scheduledAt).toISOString()}) of a history this volume did not write, at epoch ${r.epoch}, and this volume (epoch ${v.info.epoch}) was not promoted over it: nothing is sent. If this volume was made anew (its data lost), the replica holds the only copy: promote it on its site. To replace the replica's data with this volume's, remove the replica's volume on its site and restart that node`,
            );
          }
          haveCopy = true;
          fullAt = c + 1;
        } else haveCopy = true; // it holds some older copy: compare checksums instead of trusting it
      }
    }
    for (const set of r.staged) {
      // What the replica staged, so that it is not sent again: at most KNOWN_MAX_BLOCKS of
      // it (a Map holds 2^24 entries); the rest is sent again, which is only slower.
      const map = new Map<number, bigint>();
      for (let i = 0; i < set.entries.length && map.size < KNOWN_MAX_BLOCKS; i += 16) map.set(Number(bytesToU64(set.entries, i)), bytesToU64(set.entries, i + 8));
      this.known.set(set.n, map);
      this.stagedCount.set(set.n, map.size);
    }
    const after = v.sink(name);
    if (after.acked === null && fullAt !== null) return { n: Math.max(after.baseline, fullAt), kind: 'full', haveCopy: true };
    if (after.acked === null) return { n: after.baseline, kind: 'full', haveCopy };
    if (after.catchUpTo !== undefined) return { n: after.catchUpTo, kind: 'delta', haveCopy: false, from: after.acked };
    return { n: after.acked + 1, kind: 'delta', haveCopy: false };
  }

  /** Point c was committed but its ACK was lost in a cut: acknowledge it now and tell the
   * node, exactly as an ACK would (the node learns the point is safe at the replica). */
  private async ackLost(c: number): Promise<void> {
    await this.ctx.volume.acknowledge(this.ctx.sink, c);
    const s = this.shipped.get(c);
    this.shipped.delete(c);
    this.ctx.onAcked(c, s === undefined ? undefined : { n: c, ...s });
  }

  private async ship(r: ResumeMsg): Promise<void> {
    let { n, kind, haveCopy, from } = await this.reconcile(r);
    let begun = -1;
    const v = this.ctx.volume;
    for (;;) {
      this.check();
      // At most MAX_POINTS_AHEAD points begun and not acknowledged (see the constant). A
      // catch-up's skipped points are none of them.
      const s = v.sink(this.ctx.sink);
      const base = s.acked === null ? null : Math.max(s.acked, (s.catchUpTo ?? 0) - 1);
      if (base !== null && n - base > MAX_POINTS_AHEAD) {
        await this.nap(PRESEND_TICK_MS);
        continue;
      }
      const latest = v.latestClosed?.n ?? -1;
      if (n > latest) {
        if (v.openSnapshot !== n) {
          // n is closing: its last writes are still landing; the volume publishes it once they have.
          await this.nap(PRESEND_TICK_MS);
          continue;
        }
        if (begun !== n) {
          this.link.send({ type: 'BEGIN', n, kind });
          begun = n;
        }
        this.current = { n, total: this.totalOf(n, kind, haveCopy) };
        await this.presend(n);
        continue;
      }
      // A catch-up (from: Volume.rebaseSink) sends every block written after `from`, as of n.
      const blocks = from === undefined ? undefined : v.changedSince(from, n);
      if (begun !== n) {
        this.link.send(from === undefined ? { type: 'BEGIN', n, kind } : { type: 'BEGIN', n, kind, from });
        if (from !== undefined) this.ctx.onCatchUpBegun?.(from, n);
      }
      this.current = { n, total: blocks === undefined ? this.totalOf(n, kind, haveCopy) : () => blocks.size };
      await this.shipClosed(n, kind, haveCopy, blocks);
      n++;
      kind = 'delta';
      haveCopy = false;
      from = undefined;
    }
  }

  /** How many blocks point n has, for status: its dirty set for a delta (growing while it is
   * open); for a full sync, nothing when the point is the empty image, else not known (only
   * non-zero or differing blocks move). */
  private totalOf(n: number, kind: 'full' | 'delta', haveCopy: boolean): () => number | null {
    const v = this.ctx.volume;
    if (kind === 'delta') return () => v.dirtyBlocks(n).size;
    if (!haveCopy && v.isZeroPoint(n)) return () => 0;
    return () => null;
  }

  private knownOf(n: number): Map<number, bigint> {
    let k = this.known.get(n);
    if (!k) {
      k = new Map();
      this.known.set(n, k);
    }
    return k;
  }

  /**
   * Sends one BLOCKS frame, waiting for window credit and rate tokens first. `deadline`
   * orders the links that wait for a shared cap: a closed point's scheduled time; pre-sends
   * come after every closed point. `remember`: keep each block's hash in `known`, so a
   * later send of n skips it while unchanged (pre-sends); a closed point's shipment sends
   * each block once and keeps none, or a point of more than 2^24 blocks (64 GiB at 4 KiB:
   * an initial sync of a big volume) would overflow the Map (V8's limit) and fail at that
   * block on every reconnect.
   */
  private async sendBlocks(n: number, blocks: WireBlock[], deadline: number | null, remember = true): Promise<void> {
    let bytes = 0;
    for (const b of blocks) bytes += b.data.length;
    while (this.inFlightBytes > 0 && this.inFlightBytes + bytes > this.ctx.windowBytes) {
      this.check();
      await this.nap(1000);
    }
    this.check();
    const charge = Math.ceil(bytes * this.wireRatio);
    // null: the caller holds the link's turn on its shared caps (a pre-send round)
    await (deadline === null ? this.ctx.bucket.spend(charge) : this.ctx.bucket.acquire(charge, deadline));
    this.check();
    const batch = ++this.batchSeq;
    this.inFlightBytes += bytes;
    this.payloadSent += bytes;
    const s = this.shipped.get(n) ?? { sentBytes: 0, minimalBytes: 0 };
    s.sentBytes += bytes;
    this.shipped.set(n, s);
    const known = this.knownOf(n);
    let fresh = 0;
    for (const b of blocks) {
      if (!known.has(b.block)) fresh++;
      if (remember) known.set(b.block, b.hash);
    }
    this.inFlight.set(batch, { bytes, n, fresh });
    // The first frame's wire bytes count from here: the socket has written all it was given (HELLO, AUTH, ...).
    if (this.ratioMark === null) {
      const wire = this.ctx.wireBytes?.();
      if (wire !== undefined) this.ratioMark = { payload: this.payloadWritten, wire, sums: { payload: 0, wire: 0 } };
    }
    this.link.send({ type: 'BLOCKS', n, batch, blocks }, (err) => {
      // An ended link's late callback: the source may hold the next connection's socket already.
      if (err || this.link.ended) return;
      this.payloadWritten += bytes;
      if (batch === this.batchSeq) this.measureWireRatio(); // the last frame handed out (batchSeq counts them)
    });
  }

  /** Pre-sends blocks of the open snapshot n as the policy decides, until n closes. */
  private async presend(n: number): Promise<void> {
    const v = this.ctx.volume;
    const bs = v.blockSize;
    // Too many blocks to hold as a Set (PRESEND_MAX_BLOCKS): the point ships at its close.
    const limit = this.ctx.presendMaxBlocks ?? PRESEND_MAX_BLOCKS;
    const dirty = v.dirtyBlocks(n);
    let oversized = dirty.size > limit;
    let told = false;
    /** Said once per point (and per session): the operator sees why this point's lag grows. */
    const tell = () => {
      if (told) return;
      told = true;
      this.ctx.onPresendStopped?.(n, limit);
    };
    if (oversized) tell();
    const pending = new Set<number>(oversized ? [] : dirty);
    let touched: Set<number> | null = null;
    const off = v.onWrite((e) => {
      if (e.snapshot === n && !oversized) {
        for (let b = e.firstBlock; b < e.firstBlock + e.blockCount; b++) {
          pending.delete(b); // re-insert: pending keeps oldest-write-first order
          pending.add(b);
          touched?.add(b);
          if (pending.size > limit) {
            oversized = true;
            pending.clear();
            tell();
            break;
          }
        }
      }
      this.poke();
    });
    const meter = this.ctx.meter;
    const ratio = () => this.wireRatio;
    const view: PresendView = {
      snapshot: n,
      blockSize: bs,
      pending,
      get throughput() {
        return meter.bytesPerSecond;
      },
      get wireRatio() {
        return ratio();
      },
    };
    /**
     * One round of pre-sends: the policy's picks for the budget, read and sent. 'idle' when
     * the policy named nothing to send (the loop then waits a tick). Through a shared cap, a
     * round with blocks to send first takes the link's turn on it, by its point's scheduled
     * close, like closed points (DESIGN "Scale"): polling the cap's spare tokens instead, two
     * links pre-sending at once shared it first come, first served, whichever point was due.
     * The round is then sized to the caps' burst (a quarter second of the tightest) and waits
     * off its tokens while it holds the turn. Only a round with blocks takes a turn: a link
     * with nothing to pre-send taking (and giving back) one every tick brought the reserve
     * turn round so often that a later closed point went before an earlier one.
     */
    const round = async (): Promise<'idle' | 'sent' | 'closed'> => {
      const shared = this.ctx.bucket.sharedCapped;
      const credit = this.ctx.windowBytes - this.inFlightBytes;
      const room = shared ? this.ctx.bucket.frameBytes() : this.ctx.bucket.available();
      const budget = Math.min(credit, room / this.wireRatio, MAX_BLOCKS_PAYLOAD);
      const picks = !oversized && pending.size > 0 && budget >= bs ? this.ctx.policy.next(Date.now(), budget, view) : [];
      if (picks.length === 0) return 'idle';
      // Written from here on: pending again, and not sent from this round's read.
      const changed = new Set<number>();
      touched = changed;
      // never more than the budget, whatever the policy returned
      const chosen = picks.slice(0, Math.floor(budget / bs)).sort((x, y) => x - y).filter((b) => pending.delete(b));
      let release: ((used?: boolean) => void) | null = null;
      let sent = false;
      try {
        // the policy named no pending block: do not spin on it
        if (chosen.length === 0) return 'idle';
        if (shared) release = await this.ctx.bucket.hold(this.ctx.nextCloseAt?.() ?? PRESEND_DEADLINE);
        this.check();
        // Closed while it waited for the turn: the close sends every block not sent.
        if (v.openSnapshot !== n) return 'closed';
        // one read per run of adjacent blocks
        const reads: { block: number; data: Buffer }[] = [];
        for (let i = 0; i < chosen.length; ) {
          let j = i + 1;
          while (j < chosen.length && chosen[j] === chosen[j - 1] + 1) j++;
          const run = await v.read(chosen[i] * bs, (j - i) * bs);
          for (let k = i; k < j; k++) reads.push({ block: chosen[k], data: run.subarray((k - i) * bs, (k - i + 1) * bs) });
          i = j;
        }
        touched = null;
        // Closed while we read: what we read may belong to n+1; the close path re-reads exactly.
        if (v.openSnapshot !== n) return 'closed';
        const known = this.knownOf(n);
        const batch: WireBlock[] = [];
        for (const { block, data } of reads) {
          if (changed.has(block)) continue; // written since it was chosen: it is pending again
          const zero = isZero(data);
          const hash = zero ? zeroBlockHash(bs) : blockHash(data);
          if (known.get(block) === hash) continue;
          batch.push({ block, hash, data: zero ? EMPTY : data });
        }
        if (batch.length > 0) await this.sendBlocks(n, batch, release !== null ? null : PRESEND_DEADLINE);
        sent = batch.length > 0;
        return 'sent';
      } finally {
        touched = null;
        release?.(sent); // a turn it sent nothing in (closed meanwhile, every block unchanged) does not count
      }
    };
    try {
      while (v.openSnapshot === n) {
        this.check();
        // Blocks pre-sent and not written since stay known (their hash): the close skips them.
        if (this.knownOf(n).size > limit) {
          oversized = true;
          tell();
        }
        const r = await round();
        if (r === 'closed') break;
        if (r === 'idle') await this.nap(PRESEND_TICK_MS);
      }
    } finally {
      off();
    }
  }

  private async checksumsOf(first: number, count: number): Promise<Uint8Array> {
    const id = ++this.checksumSeq;
    const reply = new Promise<Uint8Array>((resolve, reject) => {
      this.checksumWaiters.set(id, resolve);
      void this.link.done.then(reject);
    });
    this.link.send({ type: 'CHECKSUM_REQ', id, first, count, rangeBlocks: CHECKSUM_RANGE_BLOCKS });
    return reply;
  }

  /**
   * Ships closed point n: every block of it, exactly as of n, then CLOSE(n). `blocks`: a
   * delta's blocks when they are not n's dirty set (a catch-up's, from an earlier point).
   */
  private async shipClosed(n: number, kind: 'full' | 'delta', haveCopy: boolean, blocks?: BlockSet): Promise<void> {
    const v = this.ctx.volume;
    const bs = v.blockSize;
    const point = v.snapshots().find((p) => p.n === n);
    if (!point) throw new HeadstartError('SNAPSHOT_UNKNOWN', `point ${n} is not kept on the source any more`);
    const known = this.knownOf(n);
    const digest = new SnapshotDigest();
    const zeroHash = zeroBlockHash(bs);
    let batch: WireBlock[] = [];
    let batchBytes = 0;
    const flush = async () => {
      if (batch.length === 0) return;
      const out = batch;
      batch = [];
      batchBytes = 0;
      await this.sendBlocks(n, out, point.scheduledAt, false);
    };
    /** Adds blocks [first, first+count) with their content as of n; `sparse`: zero blocks are not part of n's set. */
    const take = async (first: number, data: Buffer, sparse: boolean) => {
      for (let i = 0; i * bs < data.length; i++) {
        const block = first + i;
        const d = data.subarray(i * bs, (i + 1) * bs);
        const zero = isZero(d);
        if (zero && sparse) continue;
        const hash = zero ? zeroHash : blockHash(d);
        digest.add(block, hash);
        if (known.get(block) === hash) continue;
        batch.push({ block, hash, data: zero ? EMPTY : d });
        batchBytes += zero ? 0 : bs;
        if (batchBytes + bs > MAX_BLOCKS_PAYLOAD || batch.length >= MAX_BLOCKS_PER_FRAME) await flush();
      }
    };
    const runBlocks = Math.max(1, Math.floor(READ_RUN_BYTES / bs));
    /** Keeps READ_AHEAD spans being read while one is hashed and framed, so disk and CPU
     * overlap (reads go through libuv's thread pool, whose latency grows on a busy machine);
     * only each span's runs are taken. */
    const pipeline = async (spans: Iterable<ReadSpan>, sparse: boolean) => {
      const it = spans[Symbol.iterator]();
      const queue: Promise<{ span: ReadSpan; data: Buffer }>[] = [];
      const fill = () => {
        while (queue.length < READ_AHEAD) {
          const r = it.next();
          if (r.done) return;
          const span = r.value;
          const read = v.readBlocksAt(n, span.first, span.count).then((data) => ({ span, data }));
          read.catch(() => undefined); // awaited in order below; this only avoids an unhandled rejection
          queue.push(read);
        }
      };
      fill();
      while (queue.length > 0) {
        const { span, data } = await queue.shift()!;
        this.check();
        fill();
        for (const [first, count] of span.runs) await take(first, data.subarray((first - span.first) * bs, (first - span.first + count) * bs), sparse);
      }
    };
    if (kind === 'delta') {
      await pipeline(readSpans((blocks ?? v.dirtyBlocks(n)).runs(runBlocks), runBlocks, Math.floor(READ_MERGE_GAP_BYTES / bs)), false);
    } else if (!haveCopy && v.isZeroPoint(n)) {
      // The point is the empty image the volume was created as: nothing to read or send.
    } else if (!haveCopy) {
      // Initial sync to an empty replica: only non-zero blocks move.
      const total = v.size / bs;
      await pipeline((function* () {
        for (let first = 0; first < total; first += runBlocks) {
          const count = Math.min(runBlocks, total - first);
          yield { first, count, runs: [[first, count]] };
        }
      })(), true);
    } else {
      // The replica holds a copy: compare range hashes, move only ranges that differ.
      const total = v.size / bs;
      const span = CHECKSUM_RANGE_BLOCKS * CHECKSUM_RANGES_PER_REQUEST;
      for (let first = 0; first < total; first += span) {
        const count = Math.min(span, total - first);
        const theirs = await this.checksumsOf(first, count);
        for (let r = 0; r * CHECKSUM_RANGE_BLOCKS < count; r++) {
          this.check();
          const b = first + r * CHECKSUM_RANGE_BLOCKS;
          const data = await v.readBlocksAt(n, b, Math.min(CHECKSUM_RANGE_BLOCKS, first + count - b));
          if (r * 8 + 8 <= theirs.length && bytesToU64(theirs, r * 8) === rangeHash(data)) continue;
          await take(b, data, false);
        }
      }
    }
    await flush();
    const s = this.shipped.get(n) ?? { sentBytes: 0, minimalBytes: 0 };
    s.minimalBytes = digest.count * bs;
    s.closeSentAt = Date.now();
    this.shipped.set(n, s);
    this.link.send({ type: 'CLOSE', point: { n: point.n, scheduledAt: point.scheduledAt, closedAt: point.closedAt, lastSeq: point.lastSeq }, count: digest.count, digest: digest.value });
    this.known.delete(n);
  }
}

/** Blocks read in one call: [first, first + count), of which only `runs` are taken. */
export interface ReadSpan {
  readonly first: number;
  readonly count: number;
  readonly runs: readonly (readonly [number, number])[];
}

/**
 * Groups ascending runs of blocks into spans of at most `maxBlocks`, joining runs whose gap
 * is at most `gapBlocks` (READ_MERGE_GAP_BYTES): scattered dirty blocks are read a span at a
 * time instead of one read each.
 */
export function* readSpans(runs: Iterable<[number, number]>, maxBlocks: number, gapBlocks: number): Generator<ReadSpan> {
  let span: { first: number; count: number; runs: [number, number][] } | null = null;
  for (const [first, count] of runs) {
    if (span !== null && first - (span.first + span.count) <= gapBlocks && first + count - span.first <= maxBlocks) {
      span.runs.push([first, count]);
      span.count = first + count - span.first;
      continue;
    }
    if (span !== null) yield span;
    span = { first, count, runs: [[first, count]] };
  }
  if (span !== null) yield span;
}
