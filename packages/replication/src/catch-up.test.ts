/**
 * A sink that was away catches up from its last point straight to the latest one
 * (Volume.rebaseSink through SourceLink.followLatest): one delta of every block written
 * between, as of the latest point; the points between are skipped, and their old content
 * was not kept for it meanwhile.
 */
import { WebSocketServer } from 'ws';
import { afterEach, describe, expect, it } from 'vitest';
import { computeProof, decodeFrame, encodeFrame, type Message } from '@headstart/protocol';
import { HeadstartError } from '@headstart/errors';
import { atSnapshotPolicy } from './policy';
import type { CommitPhase } from './replica-target';
import type { SourceEvent } from './source';
import { SECRET, imageHash, makePair, randomBlock, sourceHashAt, type Pair } from './testing.test-helpers';

let pair: Pair | undefined;
afterEach(async () => {
  await pair?.cleanup();
  pair = undefined;
});

async function until(what: string, ok: () => boolean, ms = 10_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!ok()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting until ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

describe('a sink that was away catches up in one delta', () => {
  it('skips the points between, sends each block once as of the latest point, and the replica ends byte-equal', async () => {
    const events: SourceEvent[] = [];
    pair = await makePair({ size: 4 * 1024 * 1024, source: { onEvent: (e) => events.push(e), policy: atSnapshotPolicy() } });
    const { source, replica, link, server } = pair;
    const bs = source.blockSize;
    await link.waitAcked(source.sink('r1').baseline, 20_000);
    await source.write(0, randomBlock(16 * bs, 1));
    const p1 = await source.closeSnapshot();
    await link.waitAcked(p1.n, 20_000);

    // The replica's volume goes out of service: the source retries, and between its tries no
    // session is under way (the sink is away).
    await server.detach('vol-1');
    const before = link.stats().payloadBytesSent;
    let last = p1.n;
    let moved: number | null = null;
    for (let i = 0; i < 6; i++) {
      await source.write(0, randomBlock(16 * bs, 10 + i)); // the same 16 blocks, rewritten in every point
      await source.write((100 + i) * bs, randomBlock(bs, 20 + i)); // and one block of its own
      last = (await source.closeSnapshot()).n;
      await until('the sink is away between two tries', () => link.mayFollowLatest);
      moved = await link.followLatest();
    }
    expect(moved).toBe(last);
    expect(source.sink('r1')).toMatchObject({ acked: p1.n, catchUpTo: last });
    expect(link.status().catchUpTo).toBe(last);
    for (let n = p1.n + 1; n < last; n++) expect(source.isReadable(n), `point ${n} is no longer kept`).toBe(false);
    // The open point overwrites the latest one's blocks: they are read back from what it preserved.
    await source.write(0, randomBlock(16 * bs, 99));
    const expected = await sourceHashAt(source, last);

    await server.attach({ volume: replica, stagingDir: `${pair.dir}/rep-staging` });
    await link.waitAcked(last, 20_000);
    expect(replica.committed?.n).toBe(last);
    expect(await imageHash(replica)).toBe(expected);
    // 16 rewritten blocks once, and each point's own block: 22 blocks, not 6 x 17.
    expect(link.stats().payloadBytesSent - before).toBe(22 * bs);
    expect(source.sink('r1').catchUpTo).toBeUndefined();
    expect(link.status().catchUpTo).toBeNull();

    // And on from there, point by point.
    await source.write(5 * bs, randomBlock(bs, 7));
    const next = await source.closeSnapshot();
    await link.waitAcked(next.n, 20_000);
    expect(await imageHash(replica)).toBe(await sourceHashAt(source, next.n));
    expect(events.filter((e) => e.type === 'resync')).toEqual([]);
  });

  it('a catch-up begun is not moved again when the link drops (what the replica staged for it stays of use)', async () => {
    pair = await makePair({ size: 4 * 1024 * 1024, source: { rateLimit: 128 * 1024 } });
    const { source, replica, link, server } = pair;
    const bs = source.blockSize;
    await link.waitAcked(source.sink('r1').baseline, 20_000);
    await source.write(0, randomBlock(bs, 1));
    const p1 = await source.closeSnapshot();
    await link.waitAcked(p1.n, 20_000);
    await server.detach('vol-1');
    for (let i = 0; i < 3; i++) {
      await source.write(0, randomBlock(256 * bs, 10 + i)); // 1 MiB: 8 s at the cap
      await source.closeSnapshot();
      await until('the sink is away', () => link.mayFollowLatest);
      await link.followLatest();
    }
    const target = source.sink('r1').catchUpTo!;
    expect(target).toBe(source.latestClosed!.n);
    await server.attach({ volume: replica, stagingDir: `${pair.dir}/rep-staging` });
    // BEGIN of the catch-up went out (its first 1 MiB frame waits for the cap's tokens).
    await until('the catch-up is begun', () => link.status().staging?.n === target);
    await server.detach('vol-1');
    await source.write(0, randomBlock(bs, 50));
    const after = await source.closeSnapshot();
    // (Once the session's wait for the cap's tokens ends: it notices the link's end only then.)
    await until('the link is down again', () => link.status().state === 'disconnected', 20_000);
    // Between its tries (no session under way) it still does not move: it was begun.
    let mayMove = false;
    for (const end = Date.now() + 2000; Date.now() < end; ) {
      mayMove ||= link.mayFollowLatest;
      await new Promise((r) => setTimeout(r, 5));
    }
    expect(mayMove).toBe(false);
    expect(await link.followLatest()).toBeNull();
    expect(source.sink('r1').catchUpTo).toBe(target);
    link.setRateLimit(null);
    await server.attach({ volume: replica, stagingDir: `${pair.dir}/rep-staging` });
    await link.waitAcked(after.n, 20_000);
    expect(await imageHash(replica)).toBe(await sourceHashAt(source, after.n));
  });

  it('a replica whose commit stopped after its journal finishes that point first, then takes the catch-up past it', async () => {
    let failAt: number | null = null;
    const onCommitPhase = (phase: CommitPhase, n: number) => {
      if (phase === 'journaled' && n === failAt) {
        failAt = null;
        throw new HeadstartError('VOLUME_NO_SPACE', 'writing the volume image: no space left on device (injected)');
      }
    };
    pair = await makePair({ size: 4 * 1024 * 1024, source: { policy: atSnapshotPolicy() }, replica: { onCommitPhase } });
    const { source, replica, link } = pair;
    const bs = source.blockSize;
    await link.waitAcked(source.sink('r1').baseline, 20_000);
    await source.write(0, randomBlock(8 * bs, 1));
    const p1 = await source.closeSnapshot();
    await link.waitAcked(p1.n, 20_000);
    // Point 2's commit stops once its journal is durable: the link fails and retries.
    failAt = p1.n + 1;
    await source.write(0, randomBlock(8 * bs, 2));
    await source.closeSnapshot();
    let last = 0;
    for (let i = 0; i < 3; i++) {
      await source.write((20 + i) * bs, randomBlock(bs, 3 + i));
      last = (await source.closeSnapshot()).n;
      await until('the sink is away between two tries', () => link.mayFollowLatest || (source.sink('r1').acked ?? 0) >= last);
      await link.followLatest();
    }
    await link.waitAcked(last, 20_000);
    expect(await imageHash(replica)).toBe(await sourceHashAt(source, last));
  });

  it('a replica that speaks only protocol 2 is resynchronised by checksum instead, and says why', async () => {
    pair = await makePair({ size: 1024 * 1024 });
    const { source, link } = pair;
    await link.waitAcked(source.sink('r1').baseline, 20_000);
    await source.write(0, randomBlock(4096, 1));
    const p1 = await source.closeSnapshot();
    await link.waitAcked(p1.n, 20_000);
    await link.stop();
    for (let i = 0; i < 3; i++) {
      await source.write(4096, randomBlock(4096, 2 + i));
      await source.closeSnapshot();
    }
    expect(await source.rebaseSink('r1')).toBe(source.latestClosed!.n); // away: it catches up
    const committedPoint = source.snapshots().find((p) => p.n === p1.n)!;
    // An older replica build: it chooses protocol 2 and holds point p1.
    const wss = new WebSocketServer({ host: '127.0.0.1', port: 0 });
    await new Promise((r) => wss.once('listening', r));
    const seen: Message[] = [];
    wss.on('connection', (ws) => {
      const nonce = Buffer.alloc(32, 3);
      let hello: Extract<Message, { type: 'HELLO' }> | null = null;
      ws.on('message', (d: Buffer) => {
        const m = decodeFrame(d);
        seen.push(m);
        if (m.type === 'HELLO') {
          hello = m;
          ws.send(encodeFrame({ type: 'CHALLENGE', version: 2, node: 'old-build', nonce }));
        }
        if (m.type === 'AUTH') {
          const proof = computeProof(SECRET, 'replica', { version: 2, sourceNonce: hello!.nonce, replicaNonce: nonce, volume: hello!.volume });
          ws.send(encodeFrame({ type: 'RESUME', proof, epoch: 1, committed: committedPoint, haveCopy: false, staged: [] }));
        }
      });
    });
    const { startSource } = await import('./source');
    const events: SourceEvent[] = [];
    pair.link = await startSource({ volume: source, sink: 'r1', url: `ws://127.0.0.1:${(wss.address() as { port: number }).port}`, secret: SECRET, onEvent: (e) => events.push(e) });
    await until('a BEGIN', () => seen.some((m) => m.type === 'BEGIN'));
    await pair.link.stop();
    await new Promise<void>((r) => wss.close(() => r()));
    const begin = seen.find((m) => m.type === 'BEGIN') as Extract<Message, { type: 'BEGIN' }>;
    expect(begin.kind).toBe('full');
    expect(begin.from).toBeUndefined();
    expect(seen.some((m) => m.type === 'CHECKSUM_REQ')).toBe(true);
    const resync = events.find((e) => e.type === 'resync') as { message: string } | undefined;
    expect(resync?.message).toMatch(/link protocol 2, which cannot take a catch-up/);
    expect(source.sink('r1').acked).toBeNull();
  });
});
