/**
 * The source's link to one sink of one volume: dials the replica, runs a SourceSession
 * per connection, and reconnects with backoff when the link drops (resume is always
 * safe: the replica tells what it has). Owns what outlives a connection: the rate limit,
 * the throughput meter, and the status the node and the dashboard show.
 */
import { HeadstartError, isHeadstartError } from '@headstart/errors';
import { MAX_BLOCKS_FRAME, MAX_BLOCKS_PAYLOAD, MAX_FRAME, loadHasher, type SinkStatus } from '@headstart/protocol';
import type { Volume } from '@headstart/volume';
import WebSocket from 'ws';
import type { Socket } from 'node:net';
import { DEFAULT_WINDOW_BYTES, LINK_DEFLATE, MAX_UNSTAGED_BYTES, RECONNECT_MAX_MS, RECONNECT_MIN_MS } from './constants';
import { continuousPolicy, type PresendPolicy } from './policy';
import { pem } from './pem';
import { RateLimits, ThroughputMeter, TokenBucket } from './rate';
import { SourceSession, type ShippedSnapshot } from './source-session';

export interface SourceOptions {
  readonly volume: Volume;
  /** The volume's consistency group (the replica's volume must be in the same one). */
  readonly group?: string;
  /** The sink's name on the volume (created with a full-copy baseline if missing). */
  readonly sink: string;
  /** ws://host:port or wss://host:port of the replica node. */
  readonly url: string;
  readonly secret: string | Uint8Array;
  readonly node?: string;
  /** Default: continuous. */
  readonly policy?: PresendPolicy;
  /** This link's own limit, bytes/s, or null/undefined for none (setRateLimit changes it). */
  readonly rateLimit?: number | null;
  /**
   * Limits this link shares with others (a TokenBucket per peer, one for the whole node):
   * each send takes from every one of them, so together the links stay under each cap.
   */
  readonly sharedLimits?: readonly TokenBucket[];
  readonly windowBytes?: number;
  /** Pre-send only while the open point has at most this many dirty blocks (default PRESEND_MAX_BLOCKS). */
  readonly presendMaxBlocks?: number;
  /**
   * When the open point is scheduled to close (epoch ms), or null: its pre-sends' turn on
   * shared caps (DESIGN "Scale": by deadline), so the volume whose point is due soonest
   * pre-sends first; closed points, due already, go before any but one turn in eight.
   * Without it, pre-sends wait for their turn after every closed and scheduled point.
   */
  readonly nextCloseAt?: () => number | null;
  /**
   * Compress frames on the wire (WebSocket permessage-deflate, zlib level 1, no context
   * kept between messages): for slow WAN links and compressible data; it costs CPU on both
   * ends. Caps count bytes on the wire, after compression (measured as the link runs:
   * SourceSession.wireRatio); the throughput B the planner uses counts block bytes.
   */
  readonly compress?: boolean;
  /** For wss: the CA that signed the replica's certificate, or that certificate itself (pinned): a PEM file's path or content, read once at start. */
  readonly ca?: string | Buffer;
  /** For wss: check the certificate names the URL's host (default true). With a pinned
   * certificate as `ca`, the chain check alone proves the peer. */
  readonly verifyHost?: boolean;
  readonly rejectUnauthorized?: boolean;
  readonly onEvent?: (e: SourceEvent) => void;
}

export type SourceEvent =
  | { readonly type: 'connected'; readonly sink: string }
  | { readonly type: 'disconnected'; readonly sink: string; readonly code: string; readonly message: string }
  | {
      readonly type: 'acked';
      readonly sink: string;
      readonly n: number;
      readonly lagMs: number;
      readonly sentBytes: number | null;
      readonly minimalBytes: number | null;
      /**
       * From CLOSE sent to its ACK: the sink's commit (journal, apply, syncs) and a round
       * trip, the part of the lag that is not the link's; null when CLOSE went on an earlier
       * connection.
       */
      readonly commitMs: number | null;
    }
  | { readonly type: 'presend-stopped'; readonly sink: string; readonly n: number; readonly limit: number }
  /** The replica did not hold the point it acknowledged (a new disk, an older copy, another primary's history): it is copied afresh. */
  | { readonly type: 'resync'; readonly sink: string; readonly message: string };

export interface WaitOptions {
  /** timeoutMs counts from the link's last progress, not from the call. */
  readonly whileProgressing?: boolean;
  /** Ends the wait early with the signal's reason (a HeadstartError), e.g. when its caller went away. */
  readonly signal?: AbortSignal;
}

export interface SourceLink {
  status(): SinkStatus;
  /** Changes the rate limit at once (bytes/s, null = none). */
  setRateLimit(bytesPerSecond: number | null): void;
  /** Link throughput from acknowledged (staged) bytes, bytes/s. */
  readonly throughput: number;
  /**
   * Resolves once the sink acknowledged point n or later; LINK_TIMEOUT after timeoutMs, or
   * with `whileProgressing`, after timeoutMs in which the link made no progress (no point
   * acknowledged, no payload sent): a long backlog on a slow link is not a stuck peer.
   */
  waitAcked(n: number, timeoutMs?: number, options?: WaitOptions): Promise<void>;
  /** Byte counters over every connection so far: frames on the wire vs block payload. */
  stats(): LinkStats;
  /**
   * Closes the link; replication stops until started again. `demoted` (the default) tells the
   * replica this volume is no longer its primary; `shutdown` looks to it like a dropped link.
   */
  stop(why?: 'demoted' | 'shutdown'): Promise<void>;
  /** Drops the current connection (it reconnects and resumes): for tests and operators. */
  reconnect(): void;
  /**
   * Whether the sink's next copy may go to the latest closed point (followLatest): no session
   * is under way, and
   *   - for a sink that holds nothing yet, none reached the replica since this link started
   *     (its full copy may have begun there);
   *   - for a sink that has points, no session began a catch-up to the point it goes to now
   *     (moving it would drop what the replica staged for it).
   */
  readonly mayFollowLatest: boolean;
  /**
   * Moves the sink's next copy to the latest closed point (Volume.rebaseSink: a full copy, or
   * a catch-up delta), holding the next session back meanwhile; nothing unless
   * mayFollowLatest. Resolves with the point it now goes to, or null if it did not move.
   */
  followLatest(): Promise<number | null>;
}

export interface LinkStats {
  /** Frames handed to the WebSocket (headers and checksums included), before any compression. */
  readonly wireBytesOut: number;
  readonly wireBytesIn: number;
  /** Block payload bytes sent (resends included). */
  readonly payloadBytesSent: number;
  /** Bytes the TCP socket wrote: after compression, with WebSocket and HTTP upgrade headers. */
  readonly socketBytesOut: number;
}

/** A rate limit several links share (pass it in their `sharedLimits`); setRate changes it for all at once. */
export function sharedRateLimit(bytesPerSecond: number | null): TokenBucket {
  return new TokenBucket(bytesPerSecond, MAX_BLOCKS_FRAME);
}

export async function startSource(options: SourceOptions): Promise<SourceLink> {
  await loadHasher();
  const v = options.volume;
  if (v.readOnly) throw new HeadstartError('VOLUME_READ_ONLY', `volume ${v.info.name} is a replica; only a primary ships snapshots`);
  const w = options.windowBytes;
  if (w !== undefined && !(Number.isSafeInteger(w) && w >= MAX_BLOCKS_PAYLOAD && w <= MAX_UNSTAGED_BYTES)) {
    throw new HeadstartError('CONFIG_INVALID', `windowBytes must be an integer from ${MAX_BLOCKS_PAYLOAD} to ${MAX_UNSTAGED_BYTES} (what a replica holds unstaged), not ${w}`);
  }
  if (options.rateLimit !== undefined && options.rateLimit !== null && !(options.rateLimit > 0)) {
    throw new HeadstartError('CONFIG_INVALID', `rate limit must be a positive number of bytes/s or null, not ${options.rateLimit}`);
  }
  if (!v.sinks().some((s) => s.name === options.sink)) await v.addSink(options.sink);
  const link = new Source(options, options.ca === undefined ? undefined : await pem(options.ca));
  link.start();
  return link;
}

/**
 * An all-zero mask makes ws skip masking (no XOR pass, no copy of every 1 MiB frame: about
 * 2 ms of CPU per MiB here). Client-to-server masking (RFC 6455 10.3) only guards
 * intermediaries that might parse our bytes as HTTP (cache poisoning through a transparent
 * proxy); through TLS no intermediary sees them, and on loopback there is none. Elsewhere
 * (plain ws:// across a network) frames stay masked.
 */
function unmaskable(url: string): boolean {
  try {
    const u = new URL(url);
    return u.protocol === 'wss:' || ['127.0.0.1', '[::1]', 'localhost'].includes(u.hostname) || u.hostname.startsWith('127.');
  } catch {
    return false;
  }
}
/** The host-name check of a pinned peer certificate: none (the chain to the pinned certificate is the check). */
function acceptAnyHost(): Error | undefined {
  return undefined;
}

function zeroMask(mask: Buffer): void {
  mask.fill(0);
}

class Source implements SourceLink {
  private readonly bucket: TokenBucket;
  private readonly limits: RateLimits;
  private readonly meter = new ThroughputMeter();
  /** Wire bytes per payload byte, measured by the sessions (SourceSession.measureWireRatio) and kept across reconnects. */
  private readonly wireRatio = { value: 1 };
  private session: SourceSession | null = null;
  private state: SinkStatus['state'] = 'connecting';
  private lastError: string | null = null;
  private stopped = false;
  private loop: Promise<void> = Promise.resolve();
  private readonly ackWaiters = new Set<() => void>();
  /** Ends each pending waitAcked with an error (at stop: no acknowledgement will come). */
  private readonly waitEnders = new Set<(err: HeadstartError) => void>();
  private sleeper: (() => void) | null = null;
  private readonly totals = { wireBytesOut: 0, wireBytesIn: 0, payloadBytesSent: 0, socketBytesOut: 0 };
  /** The current connection's TCP socket (its byte count). */
  private socket: Socket | null = null;
  /** A session got the replica's RESUME since this link started: the sink's copy may be under way there. */
  private reached = false;
  /** A followLatest under way: the next session waits for it (it reads the sink's baseline). */
  private rebasing: Promise<void> | null = null;
  /** The catch-up point a session has sent BEGIN for (this process): it is not moved again. */
  private catchUpBegun: number | null = null;

  constructor(
    private readonly options: SourceOptions,
    /** options.ca's content. */
    private readonly ca: Buffer | undefined,
  ) {
    this.bucket = new TokenBucket(options.rateLimit ?? null, MAX_BLOCKS_FRAME);
    this.limits = new RateLimits(this.bucket, options.sharedLimits ?? []);
  }

  start(): void {
    this.loop = this.run();
  }

  get mayFollowLatest(): boolean {
    if (this.stopped || this.session !== null || this.rebasing !== null) return false;
    const s = this.options.volume.sinks().find((k) => k.name === this.options.sink);
    if (s === undefined) return false;
    return s.acked === null ? !this.reached : s.catchUpTo === undefined || s.catchUpTo !== this.catchUpBegun;
  }

  followLatest(): Promise<number | null> {
    if (!this.mayFollowLatest) return Promise.resolve(null);
    const p = this.options.volume.rebaseSink(this.options.sink);
    // Set before any await: a session about to start sees it and waits.
    const held: Promise<void> = p.then(
      () => undefined,
      () => undefined,
    ).finally(() => {
      if (this.rebasing === held) this.rebasing = null;
    });
    this.rebasing = held;
    return p;
  }

  private async run(): Promise<void> {
    let backoff = RECONNECT_MIN_MS;
    while (!this.stopped) {
      // A move of the sink's baseline under way: the session's first step reads it.
      while (this.rebasing !== null) await this.rebasing;
      if (this.stopped) break;
      const ws = new WebSocket(this.options.url, {
        maxPayload: MAX_FRAME + 1024,
        perMessageDeflate: this.options.compress ? LINK_DEFLATE : false,
        ...(unmaskable(this.options.url) ? { generateMask: zeroMask } : {}),
        ca: this.ca,
        // tls.connect's checkServerIdentity returns an Error or undefined (ws's typings say boolean)
        ...(this.options.verifyHost === false ? { checkServerIdentity: acceptAnyHost as unknown as WebSocket.ClientOptions['checkServerIdentity'] } : {}),
        rejectUnauthorized: this.options.rejectUnauthorized ?? true,
      });
      ws.once('upgrade', (res) => (this.socket = res.socket));
      const o = this.options;
      const session = new SourceSession(ws, {
        volume: o.volume,
        group: o.group,
        sink: o.sink,
        secret: o.secret,
        node: o.node ?? 'source',
        policy: o.policy ?? continuousPolicy(),
        windowBytes: o.windowBytes ?? DEFAULT_WINDOW_BYTES,
        presendMaxBlocks: o.presendMaxBlocks,
        nextCloseAt: o.nextCloseAt,
        bucket: this.limits,
        wireBytes: () => this.socket?.bytesWritten,
        wireRatio: this.wireRatio,
        meter: this.meter,
        onReady: () => {
          this.reached = true;
          this.state = 'connected';
          this.lastError = null;
          o.onEvent?.({ type: 'connected', sink: o.sink });
        },
        onPresendStopped: (n, limit) => o.onEvent?.({ type: 'presend-stopped', sink: o.sink, n, limit }),
        onResync: (message) => o.onEvent?.({ type: 'resync', sink: o.sink, message }),
        onCatchUpBegun: (_from, n) => (this.catchUpBegun = n),
        onAcked: (n, shipped) => {
          // The backoff starts over once the replica commits something, not at each
          // handshake: a replica that accepts the link and fails every session (its disk is
          // full) was reconnected to every 100 ms, its window resent each time.
          backoff = RECONNECT_MIN_MS;
          this.acked(n, shipped);
        },
      });
      this.session = session;
      const err = await session.run();
      this.session = null;
      this.totals.wireBytesOut += session.link.wireBytesOut;
      this.totals.wireBytesIn += session.link.wireBytesIn;
      this.totals.payloadBytesSent += session.payloadSent;
      this.totals.socketBytesOut += this.socket?.bytesWritten ?? 0;
      this.socket = null;
      if (this.stopped) break;
      // REPL_STOPPED here came from the replica (our own stop ended the loop above): a replica
      // node shutting down or restarting. That is a lost peer, not a fault to act on.
      const retryable = err.retryable || err.code === 'REPL_STOPPED';
      this.state = err.code === 'REPL_EPOCH_FENCED' ? 'fenced' : retryable ? 'disconnected' : 'error';
      this.lastError = err.describe();
      o.onEvent?.({ type: 'disconnected', sink: o.sink, code: err.code, message: err.message });
      // Retryable failures (including a digest mismatch: the point is sent again) back off
      // exponentially from RECONNECT_MIN_MS; the others retry slowly, since an operator must act.
      const wait = retryable ? backoff : RECONNECT_MAX_MS;
      backoff = Math.min(backoff * 2, RECONNECT_MAX_MS);
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, wait);
        this.sleeper = () => {
          clearTimeout(t);
          resolve();
        };
      });
      this.sleeper = null;
    }
  }

  private acked(n: number, shipped: ShippedSnapshot | undefined): void {
    const point = this.options.volume.snapshots().find((p) => p.n === n);
    this.options.onEvent?.({
      type: 'acked',
      sink: this.options.sink,
      n,
      lagMs: point ? Math.max(0, Date.now() - point.scheduledAt) : 0,
      sentBytes: shipped?.sentBytes ?? null,
      minimalBytes: shipped?.minimalBytes ?? null,
      commitMs: shipped?.closeSentAt === undefined ? null : Math.max(0, Date.now() - shipped.closeSentAt),
    });
    for (const w of [...this.ackWaiters]) w();
  }

  status(): SinkStatus {
    const s = this.options.volume.sink(this.options.sink);
    const p = s.acked === null ? undefined : this.options.volume.snapshots().find((x) => x.n === s.acked);
    return {
      name: this.options.sink,
      state: this.state,
      acked: s.acked,
      ackedScheduledAt: p?.scheduledAt ?? null,
      throughput: this.meter.shownBytesPerSecond,
      inFlightBytes: this.session?.inFlightPayload ?? 0,
      rateLimit: this.limits.limit,
      lastError: this.lastError,
      staging: this.session?.staging() ?? null,
      catchUpTo: s.catchUpTo ?? null,
    };
  }

  stats(): LinkStats {
    const s = this.session;
    return {
      wireBytesOut: this.totals.wireBytesOut + (s?.link.wireBytesOut ?? 0),
      wireBytesIn: this.totals.wireBytesIn + (s?.link.wireBytesIn ?? 0),
      payloadBytesSent: this.totals.payloadBytesSent + (s?.payloadSent ?? 0),
      socketBytesOut: this.totals.socketBytesOut + (this.socket?.bytesWritten ?? 0),
    };
  }

  setRateLimit(bytesPerSecond: number | null): void {
    if (bytesPerSecond !== null && !(bytesPerSecond > 0)) throw new HeadstartError('CONFIG_INVALID', `rate limit must be a positive number of bytes/s or null, not ${bytesPerSecond}`);
    this.bucket.setRate(bytesPerSecond);
  }

  get throughput(): number {
    return this.meter.bytesPerSecond;
  }

  waitAcked(n: number, timeoutMs = 60_000, options: WaitOptions = {}): Promise<void> {
    return new Promise((resolve, reject) => {
      const acked = () => this.options.volume.sink(this.options.sink).acked;
      const end = (err: HeadstartError | null) => {
        this.ackWaiters.delete(check);
        this.waitEnders.delete(end);
        clearTimeout(t);
        options.signal?.removeEventListener('abort', aborted);
        if (err === null) resolve();
        else reject(err);
      };
      const aborted = () => {
        const reason: unknown = options.signal?.reason;
        end(isHeadstartError(reason) ? reason : new HeadstartError('REPL_STOPPED', `the wait for point ${n} on ${this.options.sink} was called off`));
      };
      const check = () => {
        const a = acked();
        if (a !== null && a >= n) end(null);
      };
      // What the link has done so far: a change is progress (whileProgressing).
      const mark = () => `${acked()}/${this.stats().payloadBytesSent}`;
      let seen = mark();
      let progressAt = Date.now();
      const expire = () => {
        if (options.whileProgressing === true) {
          const now = mark();
          if (now !== seen) {
            seen = now;
            progressAt = Date.now();
          }
          const left = progressAt + timeoutMs - Date.now();
          if (left > 0) {
            t = setTimeout(expire, Math.min(left, 1000));
            return;
          }
        }
        const why = options.whileProgressing === true ? `made no progress for ${timeoutMs} ms towards point ${n} (acknowledged: ${acked() ?? 'none'})` : `did not acknowledge point ${n} within ${timeoutMs} ms`;
        end(new HeadstartError('LINK_TIMEOUT', `sink ${this.options.sink} ${why} (${this.lastError ?? this.state})`));
      };
      let t = setTimeout(expire, options.whileProgressing === true ? Math.min(timeoutMs, 1000) : timeoutMs);
      this.ackWaiters.add(check);
      this.waitEnders.add(end);
      options.signal?.addEventListener('abort', aborted);
      check();
      if (this.stopped && this.waitEnders.has(end)) end(new HeadstartError('REPL_STOPPED', `replication to ${this.options.sink} is stopped: point ${n} will not be acknowledged`));
      if (options.signal?.aborted === true && this.waitEnders.has(end)) aborted();
    });
  }

  reconnect(): void {
    this.session?.link.close(new HeadstartError('LINK_CLOSED', 'reconnect requested'));
  }

  async stop(why: 'demoted' | 'shutdown' = 'demoted'): Promise<void> {
    this.stopped = true;
    for (const end of [...this.waitEnders]) end(new HeadstartError('REPL_STOPPED', `replication to ${this.options.sink} stopped before the point was acknowledged`));
    this.session?.link.close(why === 'demoted' ? new HeadstartError('REPL_STOPPED', 'replication stopped: the volume was demoted') : new HeadstartError('LINK_CLOSED', 'the source node is shutting down'));
    this.sleeper?.();
    await this.loop;
    this.state = 'disconnected';
  }
}
