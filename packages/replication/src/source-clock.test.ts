/**
 * The replica reads its source's clock from the source's keepalive PINGs (they carry the
 * source's wall clock) and reports how far its own is ahead: the node uses it to measure the
 * replica's RPO age on the primary's clock and to say that the clocks differ. Before, nothing
 * compared them: a replica 5 min behind its primary printed "RPO age -268.1 s", one 90 s
 * ahead a false 115 s.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { computeProof, decodeFrame, encodeFrame, freshNonce, type Message, type WireVolume } from '@headstart/protocol';
import { createVolume } from '@headstart/volume';
import WebSocket from 'ws';
import { describe, expect, it } from 'vitest';
import { startReplicaServer, type ReplicaEvent } from './replica-server';

const SECRET = 'clock-test-secret';
const SIZE = 1024 * 1024;

describe("the source's clock", () => {
  it('is read from its PINGs: a source 90 s behind makes this node 90 s ahead', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'hs-clock-'));
    const replica = await createVolume(join(dir, 'rep'), { size: SIZE, id: 'vol-c', role: 'replica' });
    const events: ReplicaEvent[] = [];
    const server = await startReplicaServer({ secret: SECRET, node: 'site-b', volumes: [{ volume: replica, stagingDir: join(dir, 'staging') }], onEvent: (e) => events.push(e) });
    try {
      const volume: WireVolume = { id: 'vol-c', epoch: replica.info.epoch, size: SIZE, blockSize: replica.blockSize };
      const ws = new WebSocket(server.url);
      const inbox: Message[] = [];
      const waiters: ((m: Message) => void)[] = [];
      ws.on('message', (d: Buffer) => {
        const m = decodeFrame(d);
        const w = waiters.shift();
        if (w) w(m);
        else inbox.push(m);
      });
      const next = () => new Promise<Message>((r) => (inbox.length > 0 ? r(inbox.shift()!) : waiters.push(r)));
      await new Promise<void>((r, j) => ws.once('open', () => r()).once('error', j));
      const nonce = freshNonce();
      ws.send(encodeFrame({ type: 'HELLO', versionMin: 2, versionMax: 2, node: 'site-a', nonce, volume }));
      const c = await next();
      if (c.type !== 'CHALLENGE') throw new Error(`expected CHALLENGE, got ${c.type}`);
      ws.send(encodeFrame({ type: 'AUTH', proof: computeProof(SECRET, 'source', { version: c.version, sourceNonce: nonce, replicaNonce: c.nonce, volume }) }));
      expect((await next()).type).toBe('RESUME');
      // A source whose clock is 90 s behind this one's.
      ws.send(encodeFrame({ type: 'PING', t: Date.now() - 90_000 }));
      expect((await next()).type).toBe('PONG');
      const clock = events.find((e) => e.type === 'source-clock');
      expect(clock).toMatchObject({ type: 'source-clock', volume: 'vol-c', source: 'site-a' });
      const ahead = clock?.type === 'source-clock' ? clock.aheadMs : NaN;
      expect(ahead).toBeGreaterThan(89_000);
      expect(ahead).toBeLessThan(91_000);
      ws.close(1000);
    } finally {
      await server.close();
      await replica.shutdown();
      await rm(dir, { recursive: true, force: true });
    }
  }, 30_000);
});
