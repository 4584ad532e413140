/**
 * A replica process faced with hostile or broken peers: garbage frames, frames before the
 * handshake, a wrong secret and a replayed handshake are refused with an ERROR frame naming
 * the code and the code's WebSocket close code; the replica stays up, its volume untouched,
 * and a proper source still replicates afterwards.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ERRORS } from '@headstart/errors';
import { computeProof, decodeFrame, encodeFrame, freshNonce, type Message, type WireVolume } from '@headstart/protocol';
import WebSocket from 'ws';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Proc } from './procs';

const SECRET = 'hostile-test-secret';
const SIZE = 1024 * 1024;
const volume: WireVolume = { id: 'hostile-vol', epoch: 1, size: SIZE, blockSize: 4096 };

let dir: string;
let replica: Proc;
let url: string;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'hs-e2e-hostile-'));
  replica = new Proc('replica-runner.ts', { dir: join(dir, 'rep'), size: SIZE, id: volume.id, secret: SECRET });
  url = (await replica.waitFor((e) => e.event === 'listening', 30_000, 'listening')).url as string;
});
afterAll(async () => {
  await replica.stop();
  await rm(dir, { recursive: true, force: true });
});

interface Outcome {
  received: Message[];
  closeCode: number;
}

/** Opens a raw connection, runs `script` (send frames, react to replies), resolves when it closes. */
function session(script: (ws: WebSocket, received: Message[], next: () => Promise<Message>) => Promise<void>): Promise<Outcome> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url);
    const received: Message[] = [];
    const waiters: ((m: Message) => void)[] = [];
    ws.on('message', (d: Buffer) => {
      const m = decodeFrame(d);
      received.push(m);
      waiters.shift()?.(m);
    });
    const next = () => new Promise<Message>((r) => waiters.push(r));
    ws.on('open', () => void script(ws, received, next).catch(reject));
    ws.on('close', (code) => resolve({ received, closeCode: code }));
    ws.on('error', reject);
  });
}

const hello = (nonce: Buffer): Message => ({ type: 'HELLO', versionMin: 2, versionMax: 2, node: 'test', nonce, volume });

function expectRefused(o: Outcome, code: keyof typeof ERRORS): void {
  const err = o.received.find((m) => m.type === 'ERROR');
  expect(err && err.type === 'ERROR' ? err.code : undefined).toBe(code);
  expect(o.closeCode).toBe(ERRORS[code].wsClose);
}

describe('a replica process refuses hostile peers', () => {
  it('garbage: unknown tag, malformed body, text frame, oversize control frame', async () => {
    expectRefused(await session(async (ws) => ws.send(Buffer.from([0xff, 1, 2, 3]))), 'LINK_UNKNOWN_MESSAGE');
    expectRefused(await session(async (ws) => ws.send(Buffer.from([1, 0xc1, 0xc1]))), 'LINK_MALFORMED_FRAME');
    expectRefused(await session(async (ws) => ws.send('hello')), 'LINK_MALFORMED_FRAME');
    expectRefused(await session(async (ws) => ws.send(Buffer.concat([Buffer.from([9]), Buffer.alloc(100_000)]))), 'LINK_FRAME_TOO_LARGE');
  });

  it('a compressed frame that inflates past the frame limit (a zip bomb) is cut off, not inflated', async () => {
    const outcome = await new Promise<{ code: number }>((resolve, reject) => {
      const ws = new WebSocket(url, { perMessageDeflate: { threshold: 0 } });
      ws.on('open', () => ws.send(Buffer.alloc(16 * 1024 * 1024))); // 16 MiB of zeroes deflate to about 16 KiB
      ws.on('close', (code) => resolve({ code }));
      ws.on('error', () => undefined); // the close code is the verdict
      setTimeout(() => reject(new Error('the replica neither closed nor answered')), 20_000);
    });
    expect(outcome.code).toBe(1009); // "message too big" (RFC 6455): inflating stops at the limit
  });

  it('frames before the handshake is complete', async () => {
    expectRefused(await session(async (ws) => ws.send(encodeFrame({ type: 'BEGIN', n: 1, kind: 'full' }))), 'LINK_OUT_OF_ORDER');
    expectRefused(await session(async (ws, _r, next) => {
      ws.send(encodeFrame(hello(freshNonce())));
      await next();
      ws.send(encodeFrame({ type: 'BLOCKS', n: 1, batch: 1, blocks: [] }));
    }), 'LINK_OUT_OF_ORDER');
  });

  it('a wrong secret', async () => {
    const o = await session(async (ws, _r, next) => {
      const nonce = freshNonce();
      ws.send(encodeFrame(hello(nonce)));
      const c = await next();
      if (c.type !== 'CHALLENGE') throw new Error(`expected CHALLENGE, got ${c.type}`);
      ws.send(encodeFrame({ type: 'AUTH', proof: computeProof('not-the-secret', 'source', { version: c.version, sourceNonce: nonce, replicaNonce: c.nonce, volume }) }));
    });
    expectRefused(o, 'LINK_AUTH_FAILED');
  });

  it('a stranger learns nothing to test secrets against: the replica proves itself only after the source', async () => {
    const o = await session(async (ws, _r, next) => {
      ws.send(encodeFrame(hello(freshNonce())));
      const c = await next();
      expect(c.type).toBe('CHALLENGE');
      expect(Object.keys(c).sort()).toEqual(['node', 'nonce', 'type', 'version']); // no proof in it
      ws.send(encodeFrame({ type: 'AUTH', proof: Buffer.alloc(32, 0xab) })); // a guess
    });
    expectRefused(o, 'LINK_AUTH_FAILED');
    expect(o.received.some((m) => m.type === 'RESUME')).toBe(false); // so no replica proof either
  });

  it('an old peer (protocol 1 only) is refused with a clear version error', async () => {
    const o = await session(async (ws) => ws.send(encodeFrame({ ...hello(freshNonce()), versionMin: 1, versionMax: 1 } as Message)));
    expectRefused(o, 'LINK_VERSION_MISMATCH');
  });

  it('a replayed handshake (recorded from a successful one)', async () => {
    const recorded: Buffer[] = [];
    const ok = await session(async (ws, _r, next) => {
      const nonce = freshNonce();
      const h = encodeFrame(hello(nonce));
      recorded.push(h);
      ws.send(h);
      const c = await next();
      if (c.type !== 'CHALLENGE') throw new Error(`expected CHALLENGE, got ${c.type}`);
      const auth = encodeFrame({ type: 'AUTH', proof: computeProof(SECRET, 'source', { version: c.version, sourceNonce: nonce, replicaNonce: c.nonce, volume }) });
      recorded.push(auth);
      ws.send(auth);
      const r = await next();
      expect(r.type).toBe('RESUME');
      ws.close(1000);
    });
    expect(ok.received.map((m) => m.type)).toEqual(['CHALLENGE', 'RESUME']);
    const replay = await session(async (ws, _r, next) => {
      ws.send(recorded[0]);
      await next(); // a fresh CHALLENGE the recording cannot answer
      ws.send(recorded[1]);
    });
    expectRefused(replay, 'LINK_AUTH_FAILED');
  });

  it('after authentication: a corrupt block, a block outside the volume, a wrong digest, a catch-up from a point it does not hold', async () => {
    /** Runs the real handshake, then `then` with the link ready. */
    const authed = (then: (ws: WebSocket, next: () => Promise<Message>) => void) =>
      session(async (ws, _r, next) => {
        const nonce = freshNonce();
        ws.send(encodeFrame(hello(nonce)));
        const c = await next();
        if (c.type !== 'CHALLENGE') throw new Error(`expected CHALLENGE, got ${c.type}`);
        ws.send(encodeFrame({ type: 'AUTH', proof: computeProof(SECRET, 'source', { version: c.version, sourceNonce: nonce, replicaNonce: c.nonce, volume }) }));
        const r = await next();
        if (r.type !== 'RESUME') throw new Error(`expected RESUME, got ${r.type}`);
        then(ws, next);
      });
    const data = Buffer.alloc(4096, 1);
    const { blockHash, loadHasher } = await import('@headstart/protocol');
    await loadHasher();
    expectRefused(await authed((ws) => {
      ws.send(encodeFrame({ type: 'BEGIN', n: 1, kind: 'full' }));
      ws.send(encodeFrame({ type: 'BLOCKS', n: 1, batch: 1, blocks: [{ block: 3, hash: blockHash(data) ^ 1n, data }] }));
    }), 'REPL_BLOCK_CORRUPT');
    expectRefused(await authed((ws) => {
      ws.send(encodeFrame({ type: 'BEGIN', n: 1, kind: 'full' }));
      ws.send(encodeFrame({ type: 'BLOCKS', n: 1, batch: 1, blocks: [{ block: SIZE / 4096, hash: blockHash(data), data }] }));
    }), 'LINK_MALFORMED_FRAME');
    const wrongDigest = await authed((ws) => {
      ws.send(encodeFrame({ type: 'BEGIN', n: 1, kind: 'full' }));
      ws.send(encodeFrame({ type: 'BLOCKS', n: 1, batch: 1, blocks: [{ block: 3, hash: blockHash(data), data }] }));
      ws.send(encodeFrame({ type: 'CLOSE', point: { n: 1, scheduledAt: 1, closedAt: 1, lastSeq: 1 }, count: 1, digest: 12345n }));
    });
    expect(wrongDigest.received.some((m) => m.type === 'NACK')).toBe(true);
    expectRefused(wrongDigest, 'REPL_DIGEST_MISMATCH');
    // A catch-up from a point the replica does not hold (it holds none).
    expectRefused(await authed((ws) => ws.send(encodeFrame({ type: 'BEGIN', n: 9, kind: 'delta', from: 4 }))), 'LINK_OUT_OF_ORDER');
  });

  it('stays up and untouched: nothing was committed', async () => {
    expect(replica.exited).toBe(false);
    expect(replica.events.some((e) => e.event === 'committed')).toBe(false);
    const errors = replica.events.filter((e) => e.event === 'replica' && e.type === 'link-error').map((e) => e.code);
    expect(errors).toEqual(expect.arrayContaining(['LINK_UNKNOWN_MESSAGE', 'LINK_MALFORMED_FRAME', 'LINK_OUT_OF_ORDER', 'LINK_AUTH_FAILED', 'LINK_FRAME_TOO_LARGE']));
  });
});
