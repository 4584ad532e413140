import { HeadstartError } from '@headstart/errors';
import { afterEach, describe, expect, it } from 'vitest';
import { atSnapshotPolicy, type PresendView } from './policy';
import { imageHash, makePair, randomBlock, sourceHashAt, type Pair } from './testing.test-helpers';

let pair: Pair | undefined;

/** Until the link has carried block bytes (the open point's pre-sends reached the replica), at most 10 s. */
async function untilSending(link: Pair['link']): Promise<void> {
  const deadline = Date.now() + 10_000;
  while (link.status().throughput === 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
}
afterEach(async () => {
  await pair?.cleanup();
  pair = undefined;
});

describe('replication in process over a real WebSocket', () => {
  it('sends the baseline then deltas; the replica equals each acknowledged point', async () => {
    pair = await makePair();
    const { source, replica, link } = pair;
    const bs = source.blockSize;
    await source.write(0, randomBlock(bs * 3, 1));
    await source.write(100 * bs, randomBlock(bs, 2));
    const p1 = await source.closeSnapshot();
    await link.waitAcked(p1.n, 20_000);
    expect(replica.committed?.n).toBe(p1.n);
    expect(await imageHash(replica)).toBe(await sourceHashAt(source, p1.n));

    await source.write(bs, randomBlock(bs, 3)); // overwrite
    await source.trim(100 * bs, bs); // trimmed block travels as zero
    await source.write(500 * bs, randomBlock(bs * 8, 4));
    const p2 = await source.closeSnapshot();
    await link.waitAcked(p2.n, 20_000);
    expect(await imageHash(replica)).toBe(await sourceHashAt(source, p2.n));
    expect(link.status().state).toBe('connected');
  });

  it('a point closed while later writes overwrite it still arrives exactly (preserved blocks)', async () => {
    pair = await makePair({ source: { policy: atSnapshotPolicy(), rateLimit: 64 * 1024 } });
    const { source, replica, link } = pair;
    const bs = source.blockSize;
    const pBase = source.latestClosed!.n;
    await link.waitAcked(pBase, 20_000);
    for (let i = 0; i < 40; i++) await source.write(i * bs, randomBlock(bs, 10 + i));
    const p1 = await source.closeSnapshot();
    const expected = await sourceHashAt(source, p1.n);
    // overwrite everything of p1 right away, while it is still being shipped (slow link)
    for (let i = 0; i < 40; i++) await source.write(i * bs, randomBlock(bs, 100 + i));
    link.setRateLimit(null);
    await link.waitAcked(p1.n, 20_000);
    expect(replica.committed!.n).toBeGreaterThanOrEqual(p1.n);
    if (replica.committed!.n === p1.n) expect(await imageHash(replica)).toBe(expected);
    const p2 = await source.closeSnapshot();
    await link.waitAcked(p2.n, 20_000);
    expect(await imageHash(replica)).toBe(await sourceHashAt(source, p2.n));
  });

  it('continuous policy pre-sends the open snapshot and resends collided blocks', async () => {
    const acked: { n: number; sentBytes: number | null; minimalBytes: number | null }[] = [];
    pair = await makePair({ source: { onEvent: (e) => e.type === 'acked' && acked.push(e) } });
    const { source, replica, link } = pair;
    const bs = source.blockSize;
    await link.waitAcked(source.latestClosed!.n, 20_000);
    for (let i = 0; i < 20; i++) await source.write(i * bs, randomBlock(bs, 200 + i));
    // wait until pre-sent: the replica has it staged before the close
    await untilSending(link);
    await new Promise((r) => setTimeout(r, 200));
    for (let i = 0; i < 5; i++) await source.write(i * bs, randomBlock(bs, 300 + i)); // collisions
    const p = await source.closeSnapshot();
    await link.waitAcked(p.n, 20_000);
    expect(await imageHash(replica)).toBe(await sourceHashAt(source, p.n));
    const last = acked.find((a) => a.n === p.n)!;
    expect(last.minimalBytes).toBe(20 * bs);
    expect(last.sentBytes).toBe(25 * bs); // 20 pre-sent + 5 collided resends
  });

  it('does not pre-send an open point of more blocks than presendMaxBlocks: it ships at its close', async () => {
    // The shipper's pending set is a JS Set, which V8 caps at 2^24 entries; past the limit
    // (PRESEND_MAX_BLOCKS, 8 here) the point waits for its close instead of failing.
    const acked: { n: number; sentBytes: number | null; minimalBytes: number | null }[] = [];
    const stopped: { n: number; limit: number }[] = [];
    pair = await makePair({ source: { presendMaxBlocks: 8, onEvent: (e) => (e.type === 'acked' && acked.push(e)) || (e.type === 'presend-stopped' && stopped.push(e)) } });
    const { source, replica, link } = pair;
    const bs = source.blockSize;
    await link.waitAcked(source.latestClosed!.n, 20_000);
    for (let i = 0; i < 4; i++) await source.write(i * bs, randomBlock(bs, 400 + i));
    // Under the limit the continuous policy pre-sends as usual.
    await untilSending(link);
    expect(link.status().throughput).toBeGreaterThan(0);
    // One write of 16 blocks: 16 pending, over the limit.
    await source.write(4 * bs, Buffer.concat(Array.from({ length: 16 }, (_, i) => randomBlock(bs, 400 + i))));
    await new Promise((r) => setTimeout(r, 500));
    // Rewritten: pre-sent, each would have cost a resend.
    await source.write(4 * bs, Buffer.concat(Array.from({ length: 16 }, (_, i) => randomBlock(bs, 500 + i))));
    const p = await source.closeSnapshot();
    await link.waitAcked(p.n, 20_000);
    expect(await imageHash(replica)).toBe(await sourceHashAt(source, p.n));
    const last = acked.find((a) => a.n === p.n)!;
    expect(last.minimalBytes).toBe(20 * bs);
    expect(last.sentBytes).toBe(20 * bs); // 0-3 pre-sent, 4-19 once at the close
    // The operator is told, once (the node logs it: the point's lag will grow).
    expect(stopped).toEqual([{ type: 'presend-stopped', sink: 'r1', n: p.n, limit: 8 }]);
  });

  it('tells, per acknowledged point, how long the replica took from CLOSE to its ACK', async () => {
    const acked: { n: number; lagMs: number; commitMs: number | null }[] = [];
    pair = await makePair({ source: { policy: atSnapshotPolicy(), onEvent: (e) => e.type === 'acked' && acked.push(e) } });
    const { source, link } = pair;
    const bs = source.blockSize;
    await link.waitAcked(source.latestClosed!.n, 20_000);
    for (let i = 0; i < 64; i++) await source.write(i * 3 * bs, randomBlock(bs, 300 + i));
    const p = await source.closeSnapshot();
    await link.waitAcked(p.n, 20_000);
    const a = acked.find((x) => x.n === p.n)!;
    expect(a.commitMs).not.toBeNull();
    expect(a.commitMs!).toBeGreaterThanOrEqual(0);
    expect(a.commitMs!).toBeLessThanOrEqual(a.lagMs);
  });

  it('resumes after a disconnect mid-transfer without resending staged blocks', async () => {
    const acked: { n: number; sentBytes: number | null }[] = [];
    pair = await makePair({ size: 16 * 1024 * 1024, source: { policy: atSnapshotPolicy(), rateLimit: 2 * 1024 * 1024, windowBytes: 1024 * 1024, onEvent: (e) => e.type === 'acked' && acked.push(e) } });
    const { source, replica, link, server } = pair;
    const bs = source.blockSize;
    await link.waitAcked(source.latestClosed!.n, 20_000);
    for (let i = 0; i < 1024; i++) await source.write(i * bs, randomBlock(bs, 1000 + i));
    const p = await source.closeSnapshot();
    await new Promise((r) => setTimeout(r, 700)); // ~2.4 MiB of 4 MiB shipped
    const inFlight = link.status().inFlightBytes;
    expect(inFlight).toBeLessThanOrEqual(1024 * 1024); // the window bounds what is in flight
    link.reconnect();
    const staged = server.targets.get('vol-1')!.staging.staged(p.n)?.blocks.size ?? 0;
    expect(staged).toBeGreaterThan(0);
    link.setRateLimit(null);
    await link.waitAcked(p.n, 20_000);
    expect(await imageHash(replica)).toBe(await sourceHashAt(source, p.n));
    // after the reconnect only blocks the replica had not staged moved again
    const after = acked.find((a) => a.n === p.n)!.sentBytes!;
    expect(after).toBeLessThanOrEqual((1024 - staged) * bs);
  });

  it('refuses a wrong secret with LINK_AUTH_FAILED and never touches the replica', async () => {
    const events: { type: string; code?: string }[] = [];
    pair = await makePair({ source: { secret: 'wrong', onEvent: (e) => events.push(e) } });
    await new Promise((r) => setTimeout(r, 500));
    expect(events.some((e) => e.type === 'disconnected' && e.code === 'LINK_AUTH_FAILED')).toBe(true);
    expect(pair.replica.committed).toBeNull();
    expect(pair.link.status().lastError).toMatch(/LINK_AUTH_FAILED/);
  });

  it('a fake replica that cannot prove the secret gets nothing shipped (its RESUME is refused)', async () => {
    const { WebSocketServer } = await import('ws');
    const { decodeFrame, encodeFrame } = await import('@headstart/protocol');
    const wss = new WebSocketServer({ host: '127.0.0.1', port: 0 });
    await new Promise((r) => wss.once('listening', r));
    const seen: string[] = [];
    wss.on('connection', (ws) => {
      ws.on('message', (d: Buffer) => {
        const m = decodeFrame(d);
        seen.push(m.type);
        if (m.type === 'HELLO') ws.send(encodeFrame({ type: 'CHALLENGE', version: m.versionMax, node: 'fake', nonce: Buffer.alloc(32, 1) }));
        if (m.type === 'AUTH') ws.send(encodeFrame({ type: 'RESUME', proof: Buffer.alloc(32, 2), epoch: 1, committed: null, haveCopy: false, staged: [] }));
      });
    });
    pair = await makePair({ startLink: false });
    const { startSource } = await import('./source');
    const events: { type: string; code?: string }[] = [];
    await pair.source.write(0, randomBlock(4096, 7));
    pair.link = await startSource({ volume: pair.source, sink: 'r1', url: `ws://127.0.0.1:${(wss.address() as { port: number }).port}`, secret: 'pairing-secret-for-tests', onEvent: (e) => events.push(e) });
    await new Promise((r) => setTimeout(r, 500));
    await pair.link.stop();
    await new Promise<void>((r) => wss.close(() => r()));
    expect(events.find((e) => e.type === 'disconnected')?.code).toBe('LINK_AUTH_FAILED');
    expect(seen).not.toContain('BEGIN');
    expect(seen).not.toContain('BLOCKS');
    expect(pair.link.stats().payloadBytesSent).toBe(0);
  });

  it('fences a source whose epoch is below the replica', async () => {
    pair = await makePair({ startLink: false });
    await pair.replica.setRole('replica', 5);
    const { startSource } = await import('./source');
    const events: { type: string; code?: string }[] = [];
    pair.link = await startSource({ volume: pair.source, sink: 'r1', url: pair.server.url, secret: 'pairing-secret-for-tests', onEvent: (e) => events.push(e) });
    await new Promise((r) => setTimeout(r, 500));
    expect(events.find((e) => e.type === 'disconnected')?.code).toBe('REPL_EPOCH_FENCED');
    expect(pair.link.status().state).toBe('fenced');
    expect(pair.replica.committed).toBeNull();
  });

  it('initial sync against a replica holding a copy moves only differing ranges', async () => {
    pair = await makePair({ size: 8 * 1024 * 1024, startLink: false, replica: { haveCopy: true } });
    const { source, replica } = pair;
    const bs = source.blockSize;
    const content = randomBlock(8 * 1024 * 1024, 77);
    await source.write(0, content);
    // the replica image was restored from an older copy: equal except for a few blocks
    const old = Buffer.from(content);
    old.fill(9, 3 * 1024 * 1024, 3 * 1024 * 1024 + bs);
    await replica.applyBlocks([{ block: 0, data: old }]);
    const { startSource } = await import('./source');
    const acked: { n: number; sentBytes: number | null }[] = [];
    pair.link = await startSource({ volume: source, sink: 'r1', url: pair.server.url, secret: 'pairing-secret-for-tests', onEvent: (e) => e.type === 'acked' && acked.push(e) });
    const base = source.sink('r1').baseline;
    await pair.link.waitAcked(base, 20_000);
    expect(await imageHash(replica)).toBe(await sourceHashAt(source, base));
    expect(acked[0].sentBytes).toBe(1024 * 1024); // one 1 MiB range differed
  });

  it('changes the rate limit at runtime and measures throughput from acknowledged bytes', async () => {
    pair = await makePair({ size: 8 * 1024 * 1024, source: { rateLimit: 1024 * 1024 } });
    const { source, link } = pair;
    await link.waitAcked(source.latestClosed!.n, 20_000);
    await source.write(0, randomBlock(2 * 1024 * 1024, 5));
    const t0 = Date.now();
    await source.closeSnapshot();
    await link.waitAcked(source.latestClosed!.n, 20_000);
    const slow = Date.now() - t0;
    expect(slow).toBeGreaterThan(800); // 2 MiB at 1 MiB/s, less the burst
    expect(link.throughput).toBeGreaterThan(0);
    expect(() => link.setRateLimit(-1)).toThrow(HeadstartError);
    link.setRateLimit(null);
    await source.write(0, randomBlock(2 * 1024 * 1024, 6));
    const t1 = Date.now();
    await source.closeSnapshot();
    await link.waitAcked(source.latestClosed!.n, 20_000);
    expect(Date.now() - t1).toBeLessThan(slow);
  });

  it('a wait counted from the last progress outlasts a slow backlog, fails once the link stops moving, and ends at stop', async () => {
    pair = await makePair({ size: 8 * 1024 * 1024, source: { policy: atSnapshotPolicy(), rateLimit: 1024 * 1024 } });
    const { source, replica, link } = pair;
    await link.waitAcked(source.latestClosed!.n, 20_000);
    // 6 MiB at a 1 MiB/s cap: at least 5.75 s (a cap only slows), in frames of at most 1 MiB.
    await source.write(0, randomBlock(6 * 1024 * 1024, 7));
    const p = await source.closeSnapshot();
    await expect(link.waitAcked(p.n, 2500)).rejects.toMatchObject({ code: 'LINK_TIMEOUT', message: expect.stringContaining(`did not acknowledge point ${p.n} within 2500 ms`) });
    await link.waitAcked(p.n, 2500, { whileProgressing: true });
    expect(replica.committed?.n).toBe(p.n);

    // No replica to talk to: the link makes no progress, and the wait says so.
    await pair.server.close();
    await source.write(0, randomBlock(source.blockSize, 8));
    const q = await source.closeSnapshot();
    const t0 = Date.now();
    await expect(link.waitAcked(q.n, 1500, { whileProgressing: true })).rejects.toMatchObject({
      code: 'LINK_TIMEOUT',
      message: expect.stringContaining(`made no progress for 1500 ms towards point ${q.n} (acknowledged: ${p.n})`),
    });
    expect(Date.now() - t0).toBeGreaterThanOrEqual(1500);
    // Stopping replication ends a pending wait at once instead of at its timeout.
    const pending = link.waitAcked(q.n, 60_000, { whileProgressing: true });
    await link.stop();
    await expect(pending).rejects.toMatchObject({ code: 'REPL_STOPPED' });
    await expect(link.waitAcked(q.n, 60_000)).rejects.toMatchObject({ code: 'REPL_STOPPED' });
  });

  it('a staged set that does not match the digest is dropped (NACK) and the point is sent again', async () => {
    pair = await makePair({ startLink: false });
    const { source, replica, server } = pair;
    const bs = source.blockSize;
    await source.write(3 * bs, randomBlock(bs, 42));
    // the replica holds a stale staged block for point 1 that the source will not send
    const { loadHasher, blockHash } = await import('@headstart/protocol');
    await loadHasher();
    const junk = randomBlock(bs, 43);
    await server.targets.get('vol-1')!.staging.stage(1, [{ block: 7, hash: blockHash(junk), data: junk }]);
    const { startSource } = await import('./source');
    const events: { type: string; code?: string }[] = [];
    pair.link = await startSource({ volume: source, sink: 'r1', url: server.url, secret: 'pairing-secret-for-tests', onEvent: (e) => events.push(e) });
    const p = source.sink('r1').baseline;
    await pair.link.waitAcked(p, 20_000);
    expect(events.some((e) => e.type === 'disconnected' && e.code === 'REPL_DIGEST_MISMATCH'), JSON.stringify(events) + p).toBe(true);
    expect(await imageHash(replica)).toBe(await sourceHashAt(source, p));
  });
});

describe('status: what the sink has staged of the point being shipped', () => {
  async function until(what: string, ok: () => boolean, ms = 10_000): Promise<void> {
    const end = Date.now() + ms;
    while (!ok()) {
      if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
      await new Promise((r) => setTimeout(r, 10));
    }
  }

  it('counts distinct staged blocks of the open point against its dirty set; a resend is not counted twice', async () => {
    pair = await makePair();
    const { source, link } = pair;
    const bs = source.blockSize;
    await link.waitAcked(source.latestClosed!.n, 20_000);
    const open = source.openSnapshot;
    for (let i = 0; i < 12; i++) await source.write(i * bs, randomBlock(bs, 300 + i));
    await until('12 blocks staged', () => link.status().staging?.stagedBlocks === 12);
    expect(link.status().staging).toEqual({ n: open, stagedBlocks: 12, totalBlocks: 12 });
    await source.write(3 * bs, randomBlock(bs, 999)); // a collision: block 3 is sent again
    await until('the resend staged', () => link.status().inFlightBytes === 0 && link.stats().payloadBytesSent >= 13 * bs);
    expect(link.status().staging).toEqual({ n: open, stagedBlocks: 12, totalBlocks: 12 });
    const p = await source.closeSnapshot();
    await link.waitAcked(p.n, 20_000);
    await until('the next point', () => link.status().staging?.n === p.n + 1);
    expect(link.status().staging).toEqual({ n: p.n + 1, stagedBlocks: 0, totalBlocks: 0 });
  });

  it('a closed point shipped at the close shows its dirty set as the total', async () => {
    pair = await makePair({ source: { policy: atSnapshotPolicy(), rateLimit: 16 * 4096 } });
    const { source, link } = pair;
    const bs = source.blockSize;
    await link.waitAcked(source.latestClosed!.n, 20_000);
    for (let i = 0; i < 32; i++) await source.write(i * bs, randomBlock(bs, 400 + i));
    const p = await source.closeSnapshot();
    // 64 KiB/s: the point's one 128 KiB frame waits about 2 s for rate tokens
    await until('the point being shipped', () => link.status().staging?.n === p.n);
    expect(link.status().staging).toEqual({ n: p.n, stagedBlocks: 0, totalBlocks: 32 });
    link.setRateLimit(null);
    await link.waitAcked(p.n, 20_000);
    expect(link.status().staging?.n).toBe(p.n + 1);
  });
});

describe('compression on the wire (permessage-deflate)', () => {
  /** Blocks of text-like content: what a database or log volume holds, and compresses. */
  function textBlock(size: number, seed: number): Buffer {
    const words = ['commit', 'insert', 'update', 'tuple', 'page', 'checkpoint', 'wal', 'index', 'vacuum', 'lsn'];
    let s = '';
    for (let i = 0; s.length < size; i++) s += `${words[(seed * 7 + i * 3) % words.length]} ${seed}:${i} `;
    return Buffer.from(s.slice(0, size));
  }

  it('a compressed link moves compressible points in fewer socket bytes, and the replica is exact', async () => {
    pair = await makePair({ size: 8 * 1024 * 1024, source: { compress: true, policy: atSnapshotPolicy() } });
    const { source, replica, link } = pair;
    const bs = source.blockSize;
    await link.waitAcked(source.latestClosed!.n, 20_000);
    const before = link.stats();
    for (let i = 0; i < 256; i++) await source.write(i * bs, textBlock(bs, i));
    const p = await source.closeSnapshot();
    await link.waitAcked(p.n, 20_000);
    expect(await imageHash(replica)).toBe(await sourceHashAt(source, p.n));
    const after = link.stats();
    const payload = after.payloadBytesSent - before.payloadBytesSent;
    expect(payload).toBe(256 * bs);
    expect(after.socketBytesOut - before.socketBytesOut).toBeLessThan(payload / 3);
  });

  const CAP = 512 * 1024;
  /** A compressed link capped at CAP, past its initial copy. */
  async function cappedCompressedPair() {
    pair = await makePair({ size: 16 * 1024 * 1024, source: { compress: true, rateLimit: CAP, policy: atSnapshotPolicy() } });
    await pair.link.waitAcked(pair.source.latestClosed!.n, 20_000);
    return { ...pair, bs: pair.source.blockSize };
  }

  it('a cap limits the bytes on the wire, so a compressed link moves compressible points faster than the cap in payload', async () => {
    const { source, replica, link, bs } = await cappedCompressedPair();
    for (let i = 0; i < 2048; i++) await source.write(i * bs, textBlock(bs, i)); // 8 MiB, deflates ~4x
    const before = link.stats();
    const started = performance.now();
    const p = await source.closeSnapshot();
    await link.waitAcked(p.n, 60_000);
    const seconds = (performance.now() - started) / 1000;
    const after = link.stats();
    const wire = after.socketBytesOut - before.socketBytesOut;
    const payload = after.payloadBytesSent - before.payloadBytesSent;
    expect(payload).toBe(2048 * bs);
    console.log(`capped compressed link: ${(wire / seconds / 1024).toFixed(0)} KiB/s on the wire, ${(payload / seconds / 1024).toFixed(0)} KiB/s of payload, cap ${CAP / 1024} KiB/s`);
    // The cap holds on the wire (the bucket's burst and the first sample's payload-rate charge on top) ...
    expect(wire / seconds).toBeLessThan(1.3 * CAP);
    // ... and the payload went faster than the cap: charged in payload bytes, as before, it took 16 s.
    expect(seconds).toBeLessThan(10);
    expect(await imageHash(replica)).toBe(await sourceHashAt(source, p.n));
  }, 90_000);

  it('keeps its measured wire ratio across a reconnection, so a capped compressed link is not slowed to payload rate again', async () => {
    const { source, replica, link, bs } = await cappedCompressedPair();
    for (let i = 0; i < 512; i++) await source.write(i * bs, textBlock(bs, i)); // 2 MiB: measures the ratio
    await link.waitAcked((await source.closeSnapshot()).n, 60_000);
    link.reconnect();
    for (let i = 512; i < 1024; i++) await source.write(i * bs, textBlock(bs, i)); // 2 MiB more, on the new connection
    const started = performance.now();
    const p = await source.closeSnapshot();
    await link.waitAcked(p.n, 60_000);
    const seconds = (performance.now() - started) / 1000;
    // A new connection that started over from a ratio of 1 took 3.9 s (its first 1 MiB frame
    // alone is charged 2 s at payload rate); at the kept ratio (~0.23) it takes about 1 s.
    console.log(`compressed link, 2 MiB of text after a reconnection: ${seconds.toFixed(2)} s at a cap of ${CAP / 1024} KiB/s`);
    expect(seconds).toBeLessThan(3);
    expect(await imageHash(replica)).toBe(await sourceHashAt(source, p.n));
  }, 90_000);

  it('tells the pre-send policy the wire ratio it measured (what a cap lets through in payload)', async () => {
    const seen: number[] = [];
    const watcher = { name: 'watcher', next: (_now: number, _budget: number, view: PresendView) => (seen.push(view.wireRatio ?? NaN), []) };
    pair = await makePair({ size: 16 * 1024 * 1024, source: { compress: true, rateLimit: CAP, policy: watcher } });
    const { source, link } = pair;
    const bs = source.blockSize;
    await link.waitAcked(source.latestClosed!.n, 20_000);
    for (let i = 0; i < 512; i++) await source.write(i * bs, textBlock(bs, i)); // 2 MiB of text
    await link.waitAcked((await source.closeSnapshot()).n, 60_000);
    seen.length = 0;
    await source.write(0, textBlock(bs, 9999)); // pending: the policy is asked
    const deadline = Date.now() + 5000;
    while (seen.length === 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    expect(seen.length).toBeGreaterThan(0);
    expect(seen.at(-1)!).toBeGreaterThan(0.05);
    expect(seen.at(-1)!).toBeLessThan(0.5); // text deflates ~4x
  }, 90_000);

  it('an uncompressed link writes at least the payload to the socket', async () => {
    pair = await makePair({ size: 8 * 1024 * 1024, source: { policy: atSnapshotPolicy() } });
    const { source, link } = pair;
    const bs = source.blockSize;
    await link.waitAcked(source.latestClosed!.n, 20_000);
    const before = link.stats();
    for (let i = 0; i < 64; i++) await source.write(i * bs, textBlock(bs, i));
    const p = await source.closeSnapshot();
    await link.waitAcked(p.n, 20_000);
    const after = link.stats();
    expect(after.socketBytesOut - before.socketBytesOut).toBeGreaterThanOrEqual(after.payloadBytesSent - before.payloadBytesSent);
  });

  it.each([
    ['a plain', false],
    ['a compressed', true],
  ])('a cap holds on %s link when its frames grow from small pre-sends to a closed point\'s 1 MiB', async (kind, compress) => {
    // A policy that pre-sends 32 KiB a call: the link runs at its cap in small frames until
    // the close, then in 1 MiB frames (of random data: a ratio of ~1 either way). The wire
    // ratio sampled each frame's payload before the socket had its bytes: at that switch it
    // fell to the floor (0.05) and recovered over a few MiB, and the closed point went ~25%
    // faster than the cap.
    // It pre-sends only once the writes are in: on a loaded machine they take seconds, and
    // what it pre-sent meanwhile left too little for the close to measure (a CI run's flake).
    let presend = false;
    const trickle = { name: 'trickle', next: (_now: number, _budget: number, view: { pending: ReadonlySet<number> }) => (presend ? [...view.pending].slice(0, 8) : []) };
    const CAP = 1024 * 1024;
    pair = await makePair({ size: 32 * 1024 * 1024, source: { policy: trickle, rateLimit: CAP, compress } });
    const { source, replica, link } = pair;
    const bs = source.blockSize;
    await link.waitAcked(source.latestClosed!.n, 20_000);
    for (let i = 0; i < 2048; i++) await source.write(i * bs, randomBlock(bs, 7000 + i)); // 8 MiB
    presend = true;
    await new Promise((r) => setTimeout(r, 1500)); // ~1.5 MiB pre-sent in 32 KiB frames
    const before = link.stats();
    const started = performance.now();
    const p = await source.closeSnapshot();
    await link.waitAcked(p.n, 60_000);
    const seconds = (performance.now() - started) / 1000;
    const wire = link.stats().socketBytesOut - before.socketBytesOut;
    expect(wire).toBeGreaterThan(4 * 1024 * 1024);
    // A cap can only make a link slower, never faster: at most the bucket's burst (a quarter
    // second) goes on top of CAP x seconds.
    console.log(`${kind} link capped at ${CAP / 1024} KiB/s: the closed point's ${(wire / 2 ** 20).toFixed(2)} MiB on the wire in ${seconds.toFixed(2)} s`);
    expect(wire).toBeLessThanOrEqual(CAP * (seconds + 0.25) * 1.02);
    expect(await imageHash(replica)).toBe(await sourceHashAt(source, p.n));
  }, 90_000);
});
