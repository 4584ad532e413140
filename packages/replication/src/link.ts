/**
 * One end of a replication link over a WebSocket: frames in and out, strict ordering, and
 * failure handling shared by source and replica. Every incoming frame is decoded and its
 * place in the conversation checked (protocol's ReplicaInbound/SourceInbound) before the
 * handler sees it; a bad frame makes this end send ERROR(code, message) and close with
 * the code's WebSocket close code, so the peer learns exactly why. Handlers run one at a
 * time in arrival order; the link ends once, with the HeadstartError that ended it.
 */
import { ERRORS, HeadstartError, isHeadstartError, type ErrorCode } from '@headstart/errors';
import { MAX_BLOCKS_FRAME, decodeFrame, encodeFrame, encodeFrameWith, type Message } from '@headstart/protocol';
import type WebSocket from 'ws';

export interface InboundOrder {
  accept(m: Message): void;
}

function isErrorCode(code: string): code is ErrorCode {
  return Object.hasOwn(ERRORS, code);
}

/** The error a peer's close code stands for (ours are 4600-4699), else LINK_CLOSED. */
export function errorFromClose(code: number, reason: string): HeadstartError {
  for (const [name, spec] of Object.entries(ERRORS)) {
    if (spec.wsClose === code && (name.startsWith('LINK_') || name.startsWith('REPL_')) && isErrorCode(name)) {
      return new HeadstartError(name, `peer closed the link: ${reason || name}`);
    }
  }
  return new HeadstartError('LINK_CLOSED', `link closed (WebSocket code ${code}${reason ? `: ${reason}` : ''})`);
}

export function asHeadstartError(err: unknown): HeadstartError {
  if (isHeadstartError(err)) return err;
  return new HeadstartError('REPL_INTERNAL', `internal failure on the link: ${(err as Error)?.message ?? String(err)}`, { cause: err });
}

/** Reused BLOCKS frame buffers kept per link (16 MiB window / 1 MiB frames, plus slack). */
const FRAME_POOL_MAX = 24;

/**
 * A socket or TLS error in words. A pinned certificate "not yet valid" or "expired" by this
 * node's clock is almost always a clock that is wrong (a peer certificate is made at `init
 * node`, valid from that instant): it says so, since waiting does not fix it until the clock
 * passes that instant.
 */
const UNTRUSTED = new Set(['DEPTH_ZERO_SELF_SIGNED_CERT', 'SELF_SIGNED_CERT_IN_CHAIN', 'UNABLE_TO_VERIFY_LEAF_SIGNATURE', 'UNABLE_TO_GET_ISSUER_CERT_LOCALLY', 'CERT_SIGNATURE_FAILURE']);

export function linkErrorMessage(err: Error & { code?: unknown }, now = Date.now()): string {
  const clock = new Date(now).toISOString();
  if (err.code === 'CERT_NOT_YET_VALID') {
    return `link error: ${err.message}: the peer's certificate starts later than this node's clock says (${clock}); this clock is behind the peer's (a certificate is valid from when \`init node\` made it): set the clocks right (NTP)`;
  }
  if (typeof err.code === 'string' && UNTRUSTED.has(err.code)) {
    return `link error: ${err.message}: the peer's certificate is not the one this node trusts for it (peers[].ca, pinned by pairing): the peer made a new one (\`init node\` again, a rebuilt site) or another node answers at that address; it will not connect until you pair the two sites again (headstart pair, then restart both nodes: a running node reads its peers at start) or fix the url`;
  }
  if (err.code === 'CERT_HAS_EXPIRED') {
    return `link error: ${err.message}: by this node's clock (${clock}) the peer's certificate has expired; if the clock is right, make the peer a new certificate and pair again, else set the clock right (NTP)`;
  }
  return `link error: ${err.message}`;
}

export class Link {
  private queue: Promise<void> = Promise.resolve();
  private readonly framePool: Buffer[] = [];
  private endedWith: HeadstartError | null = null;
  /** Whether the peer closed the link (its close frame came first), rather than this side. */
  closedByPeer = false;
  private resolveDone!: (err: HeadstartError) => void;
  /** Resolves (never rejects) with the reason the link ended. */
  readonly done: Promise<HeadstartError> = new Promise((r) => (this.resolveDone = r));
  wireBytesOut = 0;
  wireBytesIn = 0;
  /** When a frame last arrived, on the monotonic clock (performance.now()): a wall clock stepped forward is no silence. */
  lastHeard = performance.now();

  constructor(
    readonly ws: WebSocket,
    private readonly order: InboundOrder,
    private readonly handler: (m: Message) => void | Promise<void>,
  ) {
    ws.binaryType = 'nodebuffer';
    ws.on('message', (data, isBinary) => this.receive(data, isBinary));
    ws.on('close', (code, reason) => {
      if (this.endedWith === null) this.closedByPeer = true;
      this.end(errorFromClose(code, reason.toString()));
    });
    ws.on('error', (err) => this.end(new HeadstartError('LINK_CLOSED', linkErrorMessage(err), { cause: err })));
  }

  get ended(): boolean {
    return this.endedWith !== null;
  }
  get bufferedAmount(): number {
    return this.ws.bufferedAmount;
  }

  private receive(data: WebSocket.RawData, isBinary: boolean): void {
    if (this.endedWith) return;
    this.lastHeard = performance.now();
    const buf = Buffer.isBuffer(data) ? data : Array.isArray(data) ? Buffer.concat(data) : Buffer.from(data);
    this.wireBytesIn += buf.length;
    let m: Message;
    try {
      if (!isBinary) throw new HeadstartError('LINK_MALFORMED_FRAME', 'malformed frame: text message on a binary link');
      m = decodeFrame(buf);
      this.order.accept(m);
    } catch (err) {
      this.fail(asHeadstartError(err));
      return;
    }
    if (m.type === 'ERROR') {
      const err = isErrorCode(m.code) ? new HeadstartError(m.code, `peer reported: ${m.message}`) : new HeadstartError('LINK_CLOSED', `peer reported ${m.code}: ${m.message}`);
      this.end(err);
      this.ws.close(1000);
      return;
    }
    this.queue = this.queue
      .then(() => (this.endedWith ? undefined : this.handler(m)))
      .catch((err: unknown) => this.fail(asHeadstartError(err)));
  }

  /**
   * Sends one message; returns the frame's size in bytes. Dropped silently once ended.
   * `written` (BLOCKS only) is called once the socket has taken the frame (after its
   * compression, on a compressed link), or with the error that ended the socket.
   */
  send(m: Message, written?: (err?: Error) => void): number {
    if (this.endedWith) return 0;
    if (m.type === 'BLOCKS') return this.sendBlocks(m, written);
    const frame = encodeFrame(m);
    this.wireBytesOut += frame.length;
    this.ws.send(frame);
    return frame.length;
  }

  /** BLOCKS frames are encoded into reused buffers: each goes back to the pool once the
   * socket has taken it (ws's send callback), so the pool holds at most the frames of one
   * window. Fresh 1 MiB buffers cost page faults on every frame. */
  private sendBlocks(m: Extract<Message, { type: 'BLOCKS' }>, written?: (err?: Error) => void): number {
    let whole: Buffer | null = null;
    const frame = encodeFrameWith(m, (size) => {
      if (size > MAX_BLOCKS_FRAME) return Buffer.allocUnsafe(size); // refused by encodeFrame's limit
      whole = this.framePool.pop() ?? Buffer.allocUnsafe(MAX_BLOCKS_FRAME);
      return whole.subarray(0, size);
    });
    this.wireBytesOut += frame.length;
    this.ws.send(frame, (err) => {
      if (whole && this.framePool.length < FRAME_POOL_MAX) this.framePool.push(whole);
      written?.(err ?? undefined);
    });
    return frame.length;
  }

  /** Ends the link because of `err`: tell the peer (ERROR + close code), then close. */
  fail(err: HeadstartError): void {
    if (this.endedWith) return;
    try {
      this.send({ type: 'ERROR', code: err.code, message: err.message.slice(0, 1000) });
    } catch {
      // the socket may already be gone; the close below still ends our side
    }
    this.end(err);
    // close reasons are limited to 123 bytes by the WebSocket spec
    this.ws.close(err.wsClose, Buffer.from(err.code).subarray(0, 120).toString());
    // a peer that does not answer the close handshake is cut off
    setTimeout(() => this.ws.terminate(), 2_000).unref();
  }

  /** Closes without blaming the peer (stop, restart). */
  close(err: HeadstartError): void {
    if (this.endedWith) return;
    this.end(err);
    this.ws.close(err.wsClose, err.code);
    setTimeout(() => this.ws.terminate(), 2_000).unref();
  }

  private end(err: HeadstartError): void {
    if (this.endedWith) return;
    this.endedWith = err;
    this.resolveDone(err);
  }

  /** Resolves once the handler has finished every message received so far. */
  idle(): Promise<void> {
    return this.queue;
  }
}
