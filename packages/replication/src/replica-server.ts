/**
 * DEV DOCS — the replica node's side of the link.
 *
 * A WebSocket server (wss when a certificate and key are given). Each connection is a
 * ReplicaSession: it runs the handshake (HELLO -> CHALLENGE -> AUTH; the source must
 * prove the pairing secret over our fresh nonce before anything else is read), picks the
 * replica volume by the source volume's id, fences a source whose epoch is below the
 * replica's, then answers RESUME (what is committed and staged) and receives snapshots:
 * BEGIN(n), BLOCKS(n)* (each block's xxhash checked, then staged; STAGED credits the
 * source's window once the batch is in LMDB), CLOSE(n) (count and digest must match the
 * staged set, else NACK and the staged set is dropped), then the commit (replica-target.ts)
 * and ACK(n). One session per volume: a newer connection replaces an older one.
 */
import { createServer as createHttpsServer, type Server as HttpsServer } from 'node:https';
import type { AddressInfo } from 'node:net';
import { HeadstartError, isHeadstartError } from '@headstart/errors';
import {
  HANDSHAKE_TIMEOUT_MS, MAX_BLOCKS_FRAME, MAX_CONTROL_FRAME, PROTOCOL_VERSION_MAX, PROTOCOL_VERSION_MIN, ReplicaInbound,
  agreeVersion, blockHash, computeProof, freshNonce, loadHasher, verifyProof, zeroBlockHash,
  type HelloMsg, type Message, type ProofInput,
} from '@headstart/protocol';
import { WebSocketServer, type WebSocket } from 'ws';
import { pem } from './pem';
import { KEEPALIVE_MS, KEEPALIVE_TIMEOUT_MS, LINK_DEFLATE, MAX_UNSTAGED_BYTES } from './constants';
import { Link, asHeadstartError } from './link';
import { CommitGroup } from './commit-group';
import { ReplicaTarget, type ReplicaVolumeConfig } from './replica-target';

export interface TlsFiles {
  /** PEM certificate (or chain) file path, or its content. */
  readonly cert: string | Buffer;
  readonly key: string | Buffer;
}

export interface ReplicaServerOptions {
  readonly secret: string | Uint8Array;
  readonly volumes: readonly ReplicaVolumeConfig[];
  readonly host?: string;
  /** 0 (default) picks a free port. */
  readonly port?: number;
  readonly node?: string;
  readonly tls?: TlsFiles;
  readonly onEvent?: (e: ReplicaEvent) => void;
}

export type ReplicaEvent =
  | { readonly type: 'session'; readonly volume: string; readonly peer: string }
  | { readonly type: 'committed'; readonly volume: string; readonly n: number }
  | { readonly type: 'nack'; readonly volume: string; readonly n: number; readonly message: string }
  | { readonly type: 'link-error'; readonly volume: string | null; readonly code: string; readonly message: string }
  /**
   * An authenticated session ended. `demoted`: its source ended it on purpose (REPL_STOPPED
   * from the source: it was demoted) and ships no more; `dropped`: the link failed, timed
   * out or was closed by a source whose node shuts down (it may be back in seconds);
   * `here`: this side ended it (a detach, this node stopping, a newer session of that volume);
   * `refused`: the source found it could not ship here (REPL_DIVERGED: another history), and
   * is no primary of this replica's data, however often it connects.
   */
  | { readonly type: 'session-ended'; readonly volume: string; readonly peer: string; readonly how: 'demoted' | 'dropped' | 'here' | 'refused' }
  /** A commit interrupted by a crash could not be finished at start (a full disk): it is retried (REDO_RETRY_MS), and finished by a source's CLOSE too. */
  | { readonly type: 'recovery-failed'; readonly volume: string; readonly code: string; readonly message: string }
  /** A retry of a commit stopped half-way (replica-target.ts, REDO_RETRY_MS): finished (`code` null), or failed again. */
  | { readonly type: 'redo'; readonly volume: string; readonly n: number; readonly code: string | null; readonly message: string }
  /**
   * The source's clock, read from its keepalive PING (it carries the source's wall clock):
   * `aheadMs` is how far this node's clock is ahead of the source's (negative: behind),
   * less half the link's round trip as this node's own PINGs measured it.
   */
  | { readonly type: 'source-clock'; readonly volume: string; readonly source: string; readonly aheadMs: number };

export interface ReplicaServer {
  readonly port: number;
  readonly url: string;
  readonly targets: ReadonlyMap<string, ReplicaTarget>;
  /**
   * Takes one volume out of service without touching the others: ends its session (a commit
   * under way finishes first; one that failed half-way is finished from its journal, or the
   * detach fails and the volume stays in service), closes its staging store and forgets the
   * target. Until
   * attach(), a source of that volume is refused with REPL_TARGET_BUSY (retryable: it keeps
   * trying). For a promotion, a demotion or an image export of that one volume.
   */
  detach(volumeId: string): Promise<void>;
  /** Puts a volume (back) in service: opens its target (finishing a journaled commit) and accepts its source again. */
  attach(config: ReplicaVolumeConfig): Promise<void>;
  /** The source of the session that feeds this volume now ("node at host:port"), or null: no primary is connected. */
  shippingFrom(volumeId: string): string | null;
  close(): Promise<void>;
}

export async function startReplicaServer(options: ReplicaServerOptions): Promise<ReplicaServer> {
  await loadHasher();
  const targets = new Map<string, ReplicaTarget>();
  const groups = new Map<string, CommitGroup>();
  const groupOf = (cfg: ReplicaVolumeConfig): CommitGroup | null => {
    if (cfg.group === undefined) return null;
    let g = groups.get(cfg.group);
    if (g === undefined) groups.set(cfg.group, (g = new CommitGroup(cfg.group)));
    return g;
  };
  // A target's own retries of a stopped commit, as events.
  const reporting = (cfg: ReplicaVolumeConfig): ReplicaVolumeConfig => ({
    ...cfg,
    onRedo: (n, err) => {
      cfg.onRedo?.(n, err);
      const volume = cfg.volume.info.id;
      if (err === null) options.onEvent?.({ type: 'redo', volume, n, code: null, message: `finished the commit of point ${n} from its journal` });
      else options.onEvent?.({ type: 'redo', volume, n, code: isHeadstartError(err) ? err.code : 'REPL_INTERNAL', message: err instanceof Error ? err.message : String(err) });
    },
  });
  for (const cfg of options.volumes) {
    // A primary volume may be a target too (a node lists all its volumes, whose roles change
    // at run time): the handshake refuses a stream into it as fenced while it is primary.
    targets.set(cfg.volume.info.id, await ReplicaTarget.open(reporting(cfg), groupOf(cfg)));
  }
  // Members of a group are recovered once all of them are open: whether a member's journal
  // is redone depends on the others' (commit-group.ts).
  for (const cfg of options.volumes) if (cfg.group !== undefined) await targets.get(cfg.volume.info.id)!.recoverOrDefer();
  for (const t of targets.values()) {
    const err = t.recoveryFailed;
    if (isHeadstartError(err)) options.onEvent?.({ type: 'recovery-failed', volume: t.id, code: err.code, message: err.message });
  }
  let https: HttpsServer | undefined;
  if (options.tls) {
    if (!options.tls.cert || !options.tls.key) throw new HeadstartError('LINK_TLS_CONFIG', 'TLS needs both a certificate and a key');
    const [cert, key] = [await pem(options.tls.cert), await pem(options.tls.key)];
    try {
      https = createHttpsServer({ cert, key });
    } catch (err) {
      throw tlsFilesError(err, options.tls);
    }
  }
  // The largest frame a replica receives is BLOCKS (RESUME and CHECKSUM_REPLY, far larger,
  // go the other way): anything bigger is cut off by ws (1009) before it is buffered whole.
  // Compression is the source's choice (SourceOptions.compress): the server accepts an offer
  // and never makes one; maxPayload bounds a message after inflating, so a small deflated
  // frame from an unauthenticated peer cannot make the replica inflate more than that.
  const wssOptions = { maxPayload: Math.max(MAX_BLOCKS_FRAME, MAX_CONTROL_FRAME) + 1024, perMessageDeflate: LINK_DEFLATE, clientTracking: true };
  const wss = https ? new WebSocketServer({ ...wssOptions, server: https }) : new WebSocketServer({ ...wssOptions, host: options.host ?? '127.0.0.1', port: options.port ?? 0 });
  // ws passes the HTTPS server's errors on as its own: without a listener on wss, a port in
  // use threw them as an uncaught 'error' event and killed the process.
  if (https) await new Promise<void>((resolve, reject) => { wss.once('error', reject); https!.once('error', reject).listen(options.port ?? 0, options.host ?? '127.0.0.1', () => resolve()); });
  else await new Promise<void>((resolve, reject) => wss.once('listening', resolve).once('error', reject));
  const sessions = new Set<ReplicaSession>();
  /** Volumes taken out of service by detach(): their sources are told to retry. */
  const detached = new Set<string>();
  wss.on('connection', (ws, req) => {
    const s = new ReplicaSession(ws, `${req.socket.remoteAddress}:${req.socket.remotePort}`, options, targets, detached);
    sessions.add(s);
    void s.link.done.then(() => sessions.delete(s));
  });
  const addr = (https ?? wss).address() as AddressInfo; // listening on TCP: always an AddressInfo
  const host = options.host ?? '127.0.0.1';
  return {
    port: addr.port,
    url: `${https ? 'wss' : 'ws'}://${host.includes(':') ? `[${host}]` : host}:${addr.port}`,
    targets,
    async detach(volumeId) {
      detached.add(volumeId);
      const t = targets.get(volumeId);
      if (!t) return;
      for (const s of sessions) if (s.targetOf === t) await s.close();
      await t.quiesce(); // a commit waiting for its group ends here (REPL_STOPPED)
      try {
        // A commit that failed half-way (its image writes met a full disk) left the image
        // between two points: finish it from its journal, or refuse. A promotion or an
        // export must never get a torn image.
        await t.recover();
      } catch (err) {
        detached.delete(volumeId); // back in service: its source resumes and retries the commit, and so does the target
        t.resumeService();
        throw err;
      }
      targets.delete(volumeId);
      await t.close();
    },
    async attach(config) {
      const id = config.volume.info.id;
      if (targets.has(id)) throw new HeadstartError('REPL_INTERNAL', `volume ${id} is attached already`);
      const t = await ReplicaTarget.open(reporting(config), groupOf(config));
      if (config.group !== undefined) await t.recover();
      targets.set(id, t);
      detached.delete(id);
    },
    shippingFrom(volumeId) {
      const t = targets.get(volumeId);
      for (const s of sessions) if (t !== undefined && s.targetOf === t && !s.link.ended) return s.source;
      return null;
    },
    async close() {
      for (const s of sessions) await s.close();
      await new Promise<void>((resolve) => wss.close(() => resolve()));
      if (https) await new Promise<void>((resolve) => https!.close(() => resolve()));
      for (const t of targets.values()) await t.close();
    },
  };
}

class ReplicaSession {
  readonly link: Link;
  /** The round trip of this side's last PING (ms), or null before the first PONG. */
  private rttMs: number | null = null;
  private readonly nonce = freshNonce();
  private hello: HelloMsg | null = null;
  private version = 0;
  private target: ReplicaTarget | null = null;
  private lastStage: Promise<unknown> = Promise.resolve();
  private unstagedBytes = 0;

  constructor(
    ws: WebSocket,
    private readonly peer: string,
    private readonly options: ReplicaServerOptions,
    private readonly targets: Map<string, ReplicaTarget>,
    private readonly detached: ReadonlySet<string>,
  ) {
    this.link = new Link(ws, new ReplicaInbound(), (m) => this.handle(m));
    const handshake = setTimeout(() => {
      if (!this.target) this.link.fail(new HeadstartError('LINK_TIMEOUT', `no complete handshake within ${HANDSHAKE_TIMEOUT_MS} ms`));
    }, HANDSHAKE_TIMEOUT_MS);
    const keepalive = setInterval(() => {
      if (performance.now() - this.link.lastHeard > KEEPALIVE_TIMEOUT_MS) this.link.fail(new HeadstartError('LINK_TIMEOUT', `source silent for ${KEEPALIVE_TIMEOUT_MS} ms`));
      else if (this.target) this.link.send({ type: 'PING', t: Date.now() });
    }, KEEPALIVE_MS);
    void this.link.done.then((err) => {
      clearTimeout(handshake);
      clearInterval(keepalive);
      if (this.target?.active === this) this.target.active = null;
      if (err.code !== 'REPL_STOPPED' && err.code !== 'LINK_CLOSED') this.options.onEvent?.({ type: 'link-error', volume: this.target?.id ?? this.hello?.volume.id ?? null, code: err.code, message: err.message });
      if (this.target) {
        const how = err.code === 'REPL_DIVERGED' ? 'refused' : err.code !== 'REPL_STOPPED' ? 'dropped' : this.link.closedByPeer ? 'demoted' : 'here';
        this.options.onEvent?.({ type: 'session-ended', volume: this.target.id, peer: this.peer, how });
      }
    });
  }

  /** The target this session feeds, once authenticated. */
  get targetOf(): ReplicaTarget | null {
    return this.target;
  }

  /** Who is on the other end: the node its HELLO named, and its address. */
  get source(): string {
    return this.hello === null ? this.peer : `${this.hello.node} at ${this.peer}`;
  }

  async close(): Promise<void> {
    this.link.close(new HeadstartError('REPL_STOPPED', 'replica session replaced or stopped'));
    await this.link.idle();
    await this.lastStage.catch(() => undefined);
  }

  private proofInput(): ProofInput {
    return { version: this.version, sourceNonce: this.hello!.nonce, replicaNonce: this.nonce, volume: this.hello!.volume };
  }

  private async handle(m: Message): Promise<void> {
    switch (m.type) {
      case 'HELLO': {
        const v = agreeVersion({ min: PROTOCOL_VERSION_MIN, max: PROTOCOL_VERSION_MAX }, { min: m.versionMin, max: m.versionMax });
        if (v === undefined) throw new HeadstartError('LINK_VERSION_MISMATCH', `source speaks protocol ${m.versionMin}-${m.versionMax}, this replica ${PROTOCOL_VERSION_MIN}-${PROTOCOL_VERSION_MAX}`);
        this.hello = m;
        this.version = v;
        // No proof of ours yet: the source proves first (auth.ts), then RESUME carries ours.
        this.link.send({ type: 'CHALLENGE', version: v, node: this.options.node ?? 'replica', nonce: this.nonce });
        return;
      }
      case 'AUTH':
        return this.authenticated(m.proof);
      case 'BEGIN':
        return this.begin(m.n, m.kind, m.from);
      case 'BLOCKS':
        return this.blocks(m.n, m.batch, m.blocks);
      case 'CLOSE':
        return this.closeSnapshot(m);
      case 'CHECKSUM_REQ': {
        const hashes = await this.target!.checksums(m.first, m.count, m.rangeBlocks);
        this.link.send({ type: 'CHECKSUM_REPLY', id: m.id, hashes });
        return;
      }
      case 'PING':
        this.link.send({ type: 'PONG', t: m.t });
        if (this.target) this.options.onEvent?.({ type: 'source-clock', volume: this.target.id, source: this.hello?.node ?? this.peer, aheadMs: Date.now() - m.t - (this.rttMs ?? 0) / 2 });
        return;
      case 'PONG':
        // Our own PING's round trip (our clock both ways): half of it is the PING's transit.
        this.rttMs = Math.max(0, Date.now() - m.t);
        return;
      default:
        return; // everything else was refused by ReplicaInbound
    }
  }

  private async authenticated(proof: Uint8Array): Promise<void> {
    if (!verifyProof(this.options.secret, 'source', this.proofInput(), proof)) {
      throw new HeadstartError('LINK_AUTH_FAILED', 'the source did not prove the pairing secret (wrong secret or a replayed handshake)');
    }
    const vol = this.hello!.volume;
    if (this.detached.has(vol.id)) throw new HeadstartError('REPL_TARGET_BUSY', `volume ${vol.id} is being promoted, demoted or exported on this node; retrying`);
    const target = this.targets.get(vol.id);
    if (!target) throw new HeadstartError('REPL_UNKNOWN_VOLUME', `this replica node has no volume ${vol.id}`);
    const info = target.volume.info;
    if (info.size !== vol.size || info.blockSize !== vol.blockSize) {
      throw new HeadstartError('REPL_VOLUME_MISMATCH', `source volume ${vol.id} is ${vol.size} B in ${vol.blockSize} B blocks, the replica ${info.size} B in ${info.blockSize} B blocks`);
    }
    const theirs = vol.group ?? null;
    const ours = target.config.group ?? null;
    if (theirs !== ours) {
      const say = (g: string | null) => (g === null ? 'in no consistency group' : `in consistency group ${g}`);
      throw new HeadstartError('REPL_VOLUME_MISMATCH', `source volume ${vol.id} is ${say(theirs)}, this replica's is ${say(ours)}: configure the same group on both sites`);
    }
    if (info.role !== 'replica') {
      // Two primaries. Say which is stale: the lower epoch (the higher one was promoted later).
      const here = this.options.node ?? 'this node';
      throw new HeadstartError(
        'REPL_EPOCH_FENCED',
        vol.epoch > info.epoch
          ? `${here} still holds volume ${vol.id} as primary at epoch ${info.epoch}, below the source's epoch ${vol.epoch}: it is the old primary; demote it on ${here} and this source resynchronises it by checksum`
          : `volume ${vol.id} is primary on ${here} at epoch ${info.epoch}, and the source's epoch ${vol.epoch} is not above it: the source is the stale one; demote it on the source's site`,
      );
    }
    if (vol.epoch < info.epoch) throw new HeadstartError('REPL_EPOCH_FENCED', `source epoch ${vol.epoch} is below the replica's epoch ${info.epoch}: refused (fencing)`);
    // A newer connection replaces an older one (the source reconnected before we saw the old one drop).
    const old = target.active;
    target.active = this;
    if (old && old !== this) await old.close();
    // RESUME tells the epoch the replica's committed point was taken under (before it takes
    // this source's higher one): a source promoted over it may replace another history, an
    // equal one may not (see SourceSession.reconcile).
    // Not the volume's epoch: that was raised by the last source promoted over it to connect,
    // maybe before any of its points was committed here (a link cut during the wait for a
    // point after the replica's), and the replica still holds the old primary's history.
    const epochBefore = target.volume.committedEpoch ?? info.epoch;
    if (vol.epoch > info.epoch) await target.volume.setRole('replica', vol.epoch);
    this.target = target;
    this.options.onEvent?.({ type: 'session', volume: vol.id, peer: this.peer });
    this.link.send({ ...(await target.resume()), epoch: epochBefore, proof: computeProof(this.options.secret, 'replica', this.proofInput()) });
  }

  /** `from`: a catch-up's delta goes from that point to n (the points between skipped), not from n - 1. */
  private begin(n: number, kind: 'full' | 'delta', from: number | undefined): void {
    const t = this.target!;
    const c = t.volume.committed?.n ?? null;
    const base = t.acceptedUpTo ?? c;
    if (kind === 'delta' && (base === null || (from ?? n - 1) !== base)) {
      throw new HeadstartError('LINK_OUT_OF_ORDER', `delta ${n}${from === undefined ? '' : ` over ${from}`} does not follow the replica's point ${base ?? 'none'}`);
    }
    if (kind === 'full' && base !== null && n <= base) {
      throw new HeadstartError('LINK_OUT_OF_ORDER', `full copy of ${n} is not newer than the replica's point ${base}`);
    }
  }

  private blocks(n: number, batch: number, blocks: readonly { block: number; hash: bigint; data: Uint8Array }[]): void {
    const t = this.target!;
    const bs = t.volume.blockSize;
    const count = t.volume.size / bs;
    let bytes = 0;
    // Check the whole batch first: a bad block stages nothing of it.
    for (const b of blocks) {
      if (b.block >= count) throw new HeadstartError('LINK_MALFORMED_FRAME', `block ${b.block} is outside the volume (${count} blocks)`);
      if (b.data.length !== 0 && b.data.length !== bs) throw new HeadstartError('LINK_MALFORMED_FRAME', `block ${b.block} carries ${b.data.length} bytes; blocks are ${bs} bytes`);
      const h = b.data.length === 0 ? zeroBlockHash(bs) : blockHash(b.data);
      if (h !== b.hash) throw new HeadstartError('REPL_BLOCK_CORRUPT', `block ${b.block} of snapshot ${n} failed its xxhash64 check`);
      bytes += b.data.length;
    }
    // A source keeps at most its window unstaged; one that ignores STAGED would make us hold
    // its frames (a commit holds staging back), so it is cut off instead.
    this.unstagedBytes += bytes;
    if (this.unstagedBytes > MAX_UNSTAGED_BYTES) throw new HeadstartError('LINK_OUT_OF_ORDER', `source has ${this.unstagedBytes} bytes unstaged, above the limit of ${MAX_UNSTAGED_BYTES}`);
    const last = t.staging.stage(n, blocks);
    // Batches may finish staging out of order (non-overlapping ones are written at once):
    // CLOSE and close() wait for all of them.
    this.lastStage = Promise.all([this.lastStage, last]);
    this.lastStage.catch(() => undefined); // failures are reported through `last` below
    last.then(
      () => {
        this.unstagedBytes -= bytes;
        this.link.send({ type: 'STAGED', batch, bytes });
      },
      (err: unknown) => this.link.fail(asHeadstartError(err)),
    );
  }

  private async closeSnapshot(m: Extract<Message, { type: 'CLOSE' }>): Promise<void> {
    const t = this.target!;
    const n = m.point.n;
    await this.lastStage;
    const set = t.staging.staged(n);
    const count = set?.blocks.size ?? 0;
    const digest = set?.digest.value ?? 0n;
    if (set?.broken || count !== m.count || digest !== m.digest) {
      await t.staging.discard([n]);
      const message = set?.broken
        ? `snapshot ${n}: a staging write failed part-way; dropped, to be sent again`
        : `snapshot ${n}: staged ${count} blocks (digest ${digest.toString(16)}), source says ${m.count} (digest ${m.digest.toString(16)}); dropped, to be sent again`;
      this.options.onEvent?.({ type: 'nack', volume: t.id, n, message });
      this.link.send({ type: 'NACK', n, code: 'REPL_DIGEST_MISMATCH', message });
      // The source has already moved on to n+1; end the link so it resumes from n cleanly.
      this.link.fail(new HeadstartError('REPL_DIGEST_MISMATCH', message));
      return;
    }
    t.enqueueCommit(m.point).then(
      () => {
        this.options.onEvent?.({ type: 'committed', volume: t.id, n });
        this.link.send({ type: 'ACK', n });
      },
      (err: unknown) => this.link.fail(asHeadstartError(err)),
    );
  }
}

/**
 * What openssl refused in the node's certificate and key, in words and with the files named
 * (it says "DECODER routines::unsupported" or "key values mismatch", with a stack).
 */
function tlsFilesError(err: unknown, files: { cert: string | Buffer; key: string | Buffer }): HeadstartError {
  const name = (v: string | Buffer, what: string) => (typeof v === 'string' && !v.includes('-----BEGIN') ? `${what} ${v}` : what);
  const cert = name(files.cert, 'the certificate');
  const key = name(files.key, 'the key');
  const why = err instanceof Error ? err.message : String(err);
  const what = /key values mismatch/i.test(why)
    ? `${key} is not the private key of ${cert} (a key from another node, or made again by another init?)`
    : /PRIVATE KEY|DECODER|bad decrypt|no start line|BAD_BASE64|ASN1|PEM/i.test(why)
      ? `${cert} or ${key} is not a PEM certificate and unencrypted PEM private key`
      : `${cert} and ${key} cannot be used for TLS`;
  return new HeadstartError('LINK_TLS_CONFIG', `${what} (openssl: ${why})`, { cause: err });
}
