/**
 * Which message may come next, per side of the link. A frame that is valid on its own but
 * not allowed at this point (BLOCKS before BEGIN, a second HELLO, anything before the
 * handshake is done) is LINK_OUT_OF_ORDER: the receiver sends ERROR and closes. Nothing
 * from an unauthenticated peer gets past `accept` except the handshake itself.
 */
import { HeadstartError } from '@headstart/errors';
import type { Message } from './messages';

function outOfOrder(m: Message, state: string): HeadstartError {
  return new HeadstartError('LINK_OUT_OF_ORDER', `${m.type} is not allowed ${state}`);
}

/** Messages arriving at the replica (from the source). */
export class ReplicaInbound {
  private phase: 'hello' | 'auth' | 'ready' = 'hello';
  /** Snapshot whose BLOCKS are being received, between BEGIN and CLOSE. */
  private open: { n: number; kind: 'full' | 'delta' } | null = null;
  private lastClosed: number | null = null;

  get authenticated(): boolean {
    return this.phase === 'ready';
  }
  get current(): number | null {
    return this.open?.n ?? null;
  }

  accept(m: Message): void {
    if (m.type === 'ERROR') return;
    if (this.phase === 'hello') {
      if (m.type !== 'HELLO') throw outOfOrder(m, 'before HELLO');
      this.phase = 'auth';
      return;
    }
    if (this.phase === 'auth') {
      if (m.type !== 'AUTH') throw outOfOrder(m, 'before the handshake is complete');
      this.phase = 'ready';
      return;
    }
    switch (m.type) {
      case 'PING': case 'PONG':
        return;
      case 'CHECKSUM_REQ':
        // Range checksums belong to an initial sync: before it, or inside a full copy.
        if (this.open && this.open.kind !== 'full') throw outOfOrder(m, `while delta ${this.open.n} is being sent`);
        return;
      case 'BEGIN':
        if (this.open) throw outOfOrder(m, `before CLOSE of snapshot ${this.open.n}`);
        if (this.lastClosed !== null && m.n <= this.lastClosed) throw outOfOrder(m, `for snapshot ${m.n} after snapshot ${this.lastClosed} was closed`);
        if (m.kind === 'delta' && this.lastClosed !== null && (m.from ?? m.n - 1) !== this.lastClosed) throw outOfOrder(m, `(delta ${m.n} over ${m.from ?? m.n - 1} does not follow ${this.lastClosed})`);
        this.open = { n: m.n, kind: m.kind };
        return;
      case 'BLOCKS':
        if (!this.open || this.open.n !== m.n) throw outOfOrder(m, `for snapshot ${m.n} (open: ${this.open?.n ?? 'none'})`);
        return;
      case 'CLOSE':
        if (!this.open || this.open.n !== m.point.n) throw outOfOrder(m, `for snapshot ${m.point.n} (open: ${this.open?.n ?? 'none'})`);
        this.lastClosed = m.point.n;
        this.open = null;
        return;
      default:
        throw outOfOrder(m, 'from a source');
    }
  }
}

/** Messages arriving at the source (from the replica). */
export class SourceInbound {
  private phase: 'challenge' | 'resume' | 'ready' = 'challenge';

  get ready(): boolean {
    return this.phase === 'ready';
  }

  accept(m: Message): void {
    if (m.type === 'ERROR') return;
    if (this.phase === 'challenge') {
      if (m.type !== 'CHALLENGE') throw outOfOrder(m, 'before CHALLENGE');
      this.phase = 'resume';
      return;
    }
    if (this.phase === 'resume') {
      if (m.type !== 'RESUME') throw outOfOrder(m, 'before RESUME');
      this.phase = 'ready';
      return;
    }
    switch (m.type) {
      case 'STAGED': case 'ACK': case 'NACK': case 'CHECKSUM_REPLY': case 'PING': case 'PONG':
        return;
      default:
        throw outOfOrder(m, 'from a replica');
    }
  }
}
