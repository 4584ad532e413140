/**
 * Scheduled verification: the primary compares itself with the replica's read-only NBD export
 * on its own, with no false alarm while it is healthy, and names the damaged range when the
 * replica's image is changed behind headstart's back (bit rot, a stray write). An operator's
 * verification waits out a backlog that moves, and lets the schedule go when called off.
 */
import { open, mkdtemp, readFile, rm } from 'node:fs/promises';
import { request } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { compareWithReplica, silentLogger, startNode, startServices, validateConfig, type HeadstartNode } from '@headstart/node';
import { freePort } from '../helpers/cli';

const SECRET = 'scheduled-verify-secret';
const MiB = 1 << 20;

const cleanup: (() => Promise<void>)[] = [];
afterAll(async () => {
  for (const c of cleanup.reverse()) await c();
});

async function until<T>(what: string, get: () => T | null | undefined, ms = 30_000): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const v = get();
    if (v !== null && v !== undefined) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/**
 * A replica node and a primary that verifies against its read-only export every second
 * (`scheduled: false`: only when asked, with its admin API up).
 */
async function pair(prefix: string, rateLimit?: string, scheduled = true): Promise<{ dir: string; primary: HeadstartNode; replica: HeadstartNode; adminPort: number | null; replicaUrl: string }> {
  const dir = await mkdtemp(join(tmpdir(), prefix));
  cleanup.push(() => rm(dir, { recursive: true, force: true }));
  const nbdPort = await freePort();
  const replica: HeadstartNode = await startNode(validateConfig({
    node: { name: 'site-b', dataDir: join(dir, 'b'), secret: SECRET },
    listen: { peers: '127.0.0.1:0', nbd: `127.0.0.1:${nbdPort}` },
    volumes: [{ name: 'vol', size: 8 * MiB, role: 'replica', sinks: [] }],
  }), silentLogger());
  cleanup.push(() => replica.stop());
  const config = validateConfig({
    node: { name: 'site-a', dataDir: join(dir, 'a'), secret: SECRET },
    peers: [{ name: 'site-b', url: `ws://127.0.0.1:${replica.peersPort}`, ...(rateLimit === undefined ? {} : { rateLimit }) }],
    ...(scheduled ? {} : { listen: { admin: `127.0.0.1:${await freePort()}` } }),
    volumes: [{ name: 'vol', size: 8 * MiB, role: 'primary', schedule: { every: '1h' }, sinks: ['site-b'], ...(scheduled ? { verify: { every: '1s', replica: `nbd://127.0.0.1:${nbdPort}/vol` } } : {}) }],
  });
  const primary: HeadstartNode = await startNode(config, silentLogger());
  cleanup.push(() => primary.stop());
  let adminPort: number | null = null;
  if (!scheduled) {
    const services = await startServices(primary, config, silentLogger());
    cleanup.push(() => services.stop());
    adminPort = services.adminPort;
  }
  return { dir, primary, replica, adminPort, replicaUrl: `nbd://127.0.0.1:${nbdPort}/vol` };
}

/** 4 MiB of random blocks: at 512 KiB/s a backlog of about 8 s (a cap only slows it). */
function randomBytes4MiB(): Buffer {
  const data = Buffer.alloc(4 * MiB);
  for (let i = 0; i < data.length; i += 4) data.writeUInt32LE((Math.random() * 2 ** 32) >>> 0, i);
  return data;
}

async function rejection(p: Promise<unknown>): Promise<{ code?: string; message?: string }> {
  return p.then(() => ({ code: 'resolved' }), (err: { code?: string; message?: string }) => err);
}

describe('scheduled verification', () => {
  it('finds the replica equal while healthy, and reports the damaged range after a stray write', async () => {
    const { dir, primary } = await pair('hs-sverify-');
    await primary.volume('vol').write(MiB, Buffer.alloc(64 * 1024, 0x5a));

    const healthy = await until('a first verification', () => primary.status().volumes[0].lastVerify);
    expect(healthy).toMatchObject({ equal: true, differingBytes: 0, error: null });
    expect(healthy.point).toBeGreaterThan(0);

    // A stray write into the replica's image, behind headstart's back, in the 4th MiB.
    const fh = await open(join(dir, 'b', 'volumes', 'vol', 'image.raw'), 'r+');
    await fh.write(Buffer.alloc(512, 0xee), 0, 512, 3 * MiB + 4096);
    await fh.close();
    const damaged = await until('a verification that sees the damage', () => {
      const lv = primary.status().volumes[0].lastVerify;
      return lv && lv.at > healthy.at && lv.equal === false ? lv : null;
    });
    expect(damaged.ranges).toEqual([[3 * MiB, MiB]]);
    expect(damaged.differingBytes).toBe(MiB);
  }, 90_000);

  it('waits while a sink is behind, without holding the schedule or closing a point, then verifies', async () => {
    const { primary } = await pair('hs-sverify-behind-', '512KiB/s');
    await until('a first verification', () => primary.status().volumes[0].lastVerify);
    await primary.volume('vol').write(0, randomBytes4MiB());
    const point = await primary.snapshotNow('vol');
    const before = primary.status().volumes[0].lastVerify!;
    await until('a deferred verification', () => (primary.status().volumes[0].verifyDeferred >= 2 ? true : null), 6_000);
    const v = primary.status().volumes[0];
    expect(v.sinks[0].acked ?? -1).toBeLessThan(point.n);
    // Nothing held: the schedule still has its next close, and no verification point was closed.
    expect(v.nextCloseAt).not.toBeNull();
    expect(primary.volume('vol').latestClosed?.n).toBe(point.n);
    expect(v.lastVerify).toEqual(before);
    const after = await until('a verification once the sink caught up', () => {
      const lv = primary.status().volumes[0].lastVerify;
      return lv && lv.at > before.at ? lv : null;
    }, 60_000);
    expect(after).toMatchObject({ equal: true, error: null });
    expect(after.point!).toBeGreaterThan(point.n);
    expect(primary.status().volumes[0].verifyDeferred).toBe(0);
  }, 90_000);

  it("an operator's verification waits out a backlog that moves, and fails on a link that does not", async () => {
    const { primary, replica } = await pair('hs-verify-backlog-', '512KiB/s', false);
    await primary.volume('vol').write(0, randomBytes4MiB());
    // No progress for 2 s would fail it; the backlog takes about 8 s, and it moves.
    const started = Date.now();
    const plan = await primary.beginVerify('vol', { timeoutMs: 2_000 });
    expect(Date.now() - started).toBeGreaterThan(4_000);
    expect(primary.status().volumes[0].sinks[0].acked).toBe(plan.n);
    expect((await rejection(primary.beginVerify('vol'))).code).toBe('VERIFY_BUSY');
    expect(primary.status().volumes[0].nextCloseAt).toBeNull(); // held while it is compared
    await primary.endVerify('vol');
    expect(primary.status().volumes[0].nextCloseAt).not.toBeNull();

    // The replica's site gone: no progress for 1.5 s fails it, and the schedule goes on.
    await replica.stop();
    await primary.volume('vol').write(0, Buffer.alloc(64 * 1024, 0x11));
    const dead = await rejection(primary.beginVerify('vol', { timeoutMs: 1_500 }));
    expect(dead.code).toBe('LINK_TIMEOUT');
    expect(dead.message).toContain('made no progress for 1500 ms');
    expect(primary.status().volumes[0].nextCloseAt).not.toBeNull();
    expect(primary.volume('vol').sinks().map((s) => s.name)).toEqual(['site-b']);
  }, 90_000);

  it('a verification called off while it waits (verify --end, its caller gone) lets the schedule go at once', async () => {
    const { dir, primary, adminPort } = await pair('hs-verify-calloff-', '512KiB/s', false);
    await primary.volume('vol').write(0, randomBytes4MiB());
    // Ended by the operator (`headstart verify vol --end`) while the backlog drains.
    const ended = rejection(primary.beginVerify('vol'));
    await new Promise((r) => setTimeout(r, 500));
    expect(primary.status().volumes[0].nextCloseAt).toBeNull();
    await primary.endVerify('vol');
    expect((await ended).code).toBe('VERIFY_ENDED');
    expect(primary.status().volumes[0].nextCloseAt).not.toBeNull();
    expect(primary.volume('vol').sinks().map((s) => s.name)).toEqual(['site-b']);

    // Through the admin API, the caller goes away (Ctrl-C of `headstart verify`): the node
    // calls the wait off, rather than holding the schedule until the backlog drains.
    await primary.volume('vol').write(0, randomBytes4MiB());
    const token = (await readFile(join(dir, 'a', 'admin.token'), 'utf8')).trim();
    const req = request({ host: '127.0.0.1', port: adminPort!, method: 'POST', path: '/v1/volumes/vol/verify-begin', headers: { authorization: `Bearer ${token}` } });
    req.on('error', () => {});
    req.end();
    await until('the verification to hold the schedule', () => (primary.status().volumes[0].nextCloseAt === null ? true : null), 5_000);
    const acked = primary.status().volumes[0].sinks[0].acked;
    req.destroy();
    await until('the hold to end once its caller went away', () => (primary.status().volumes[0].nextCloseAt !== null ? true : null), 3_000);
    expect(primary.volume('vol').sinks().map((s) => s.name)).toEqual(['site-b']);
    // Called off well before the backlog drained.
    expect(primary.status().volumes[0].sinks[0].acked).toBe(acked);
  }, 90_000);

  it('a comparison renews its hold on the point, and one whose hold ended compares nothing', async () => {
    // A large volume's comparison reads for longer than the hold (10 min): past it, newer
    // points would commit on the replica under the read and show as false differences.
    const { dir, primary, adminPort, replicaUrl } = await pair('hs-verify-renew-', undefined, false);
    await primary.volume('vol').write(0, Buffer.alloc(64 * 1024, 0x42));
    const plan = await primary.beginVerify('vol');
    expect(await primary.renewVerify('vol', plan.n)).toEqual({ n: plan.n, heldForMs: 10 * 60_000 });
    expect((await rejection(primary.renewVerify('vol', plan.n + 1))).code).toBe('VERIFY_ENDED');
    let renewals = 0;
    const r = await compareWithReplica(plan, replicaUrl, undefined, () => (renewals++, primary.renewVerify('vol', plan.n)));
    expect(r.equal).toBe(true);
    expect(renewals).toBeGreaterThanOrEqual(1); // at least once, when the read is done
    await primary.endVerify('vol');
    // The hold is gone (ended, expired, the node restarted): the comparison says so, with no verdict.
    const ended = await rejection(compareWithReplica(plan, replicaUrl, undefined, () => primary.renewVerify('vol', plan.n)));
    expect(ended.code).toBe('VERIFY_ENDED');
    expect(ended.message).toContain('its comparison is void');
    // The CLI renews through the admin API: the same answer there.
    const token = (await readFile(join(dir, 'a', 'admin.token'), 'utf8')).trim();
    const answer = await new Promise<{ status: number; body: { code?: string } }>((resolve, reject) => {
      const req = request({ host: '127.0.0.1', port: adminPort!, method: 'POST', path: `/v1/volumes/vol/verify-renew?n=${plan.n}`, headers: { authorization: `Bearer ${token}` } }, (res) => {
        let text = '';
        res.on('data', (c: Buffer) => (text += c.toString()));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body: JSON.parse(text) as { code?: string } }));
      });
      req.on('error', reject);
      req.end();
    });
    expect(answer.body.code).toBe('VERIFY_ENDED');
    expect(answer.status).toBeGreaterThanOrEqual(400);

    // A comparison ends its own hold only: one whose hold expired must not end the next
    // verification, begun by someone else meanwhile.
    const next = await primary.beginVerify('vol');
    expect(next.n).toBeGreaterThan(plan.n);
    expect(await primary.endVerify('vol', plan.n)).toBe(false);
    expect(primary.status().volumes[0].nextCloseAt).toBeNull(); // still held
    expect(await primary.renewVerify('vol', next.n)).toEqual({ n: next.n, heldForMs: 10 * 60_000 });
    expect(await primary.endVerify('vol', next.n)).toBe(true);
    expect(primary.status().volumes[0].nextCloseAt).not.toBeNull();
  }, 60_000);

  it('exports and begins a verification while its sink has acknowledged nothing yet (its first copy)', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'hs-verify-first-'));
    cleanup.push(() => rm(dir, { recursive: true, force: true }));
    // Nobody listens at the peer's address: the sink stays in its first copy.
    const primary = await startNode(validateConfig({
      node: { name: 'site-a', dataDir: join(dir, 'a'), secret: SECRET },
      peers: [{ name: 'site-b', url: `ws://127.0.0.1:${await freePort()}` }],
      volumes: [{ name: 'vol', size: 8 * MiB, role: 'primary', schedule: { every: '1h' }, sinks: ['site-b'] }],
    }), silentLogger());
    cleanup.push(() => primary.stop());
    const data = randomBytes4MiB();
    await primary.volume('vol').write(0, data);
    expect(primary.status().volumes[0].sinks[0].acked).toBeNull();
    // Both used to fail with SINK_BAD_ACK ("point -1 is no longer kept ... full resync").
    const exported = await primary.exportImage('vol', join(dir, 'export.raw'));
    expect((await readFile(join(dir, 'export.raw'))).subarray(0, 4 * MiB).equals(data)).toBe(true);
    expect(exported.bytes).toBe(8 * MiB);
    const verify = await rejection(primary.beginVerify('vol', { timeoutMs: 1_000 }));
    expect(verify.code).toBe('LINK_TIMEOUT'); // the replica is unreachable: the honest reason
    expect(primary.volume('vol').sinks().map((s) => s.name)).toEqual(['site-b']);
    expect(primary.status().volumes[0].nextCloseAt).not.toBeNull();
  }, 60_000);

  it('verify --sink waits for the compared replica only: another sink that is down neither delays nor fails it', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'hs-verify-sink-'));
    cleanup.push(() => rm(dir, { recursive: true, force: true }));
    const nbdPort = await freePort();
    const replica: HeadstartNode = await startNode(validateConfig({
      node: { name: 'site-b', dataDir: join(dir, 'b'), secret: SECRET },
      listen: { peers: '127.0.0.1:0', nbd: `127.0.0.1:${nbdPort}` },
      volumes: [{ name: 'vol', size: 8 * MiB, role: 'replica', sinks: [] }],
    }), silentLogger());
    cleanup.push(() => replica.stop());
    const primary: HeadstartNode = await startNode(validateConfig({
      node: { name: 'site-a', dataDir: join(dir, 'a'), secret: SECRET },
      peers: [
        { name: 'site-b', url: `ws://127.0.0.1:${replica.peersPort}` },
        { name: 'site-c', url: `ws://127.0.0.1:${await freePort()}` }, // its site is down
      ],
      volumes: [{ name: 'vol', size: 8 * MiB, role: 'primary', schedule: { every: '1h' }, sinks: ['site-b', 'site-c'] }],
    }), silentLogger());
    cleanup.push(() => primary.stop());
    await primary.volume('vol').write(0, Buffer.alloc(MiB, 0x5a));
    const plan = await primary.beginVerify('vol', { sink: 'site-b', timeoutMs: 20_000 });
    expect(plan.n).toBeGreaterThanOrEqual(1);
    await primary.endVerify('vol');
    const all = await rejection(primary.beginVerify('vol', { timeoutMs: 1500 }));
    expect(all.code).toBe('LINK_TIMEOUT');
    expect(all.message).toContain('verify --sink NAME waits for the compared replica\'s sink only; here site-c is one of site-b, site-c');
    const typo = await rejection(primary.beginVerify('vol', { sink: 'site-x' }));
    expect(typo).toMatchObject({ code: 'CONFIG_INVALID', message: '--sink site-x: volume vol has no sink of that name (its sinks: site-b, site-c)' });
  }, 60_000);
});

