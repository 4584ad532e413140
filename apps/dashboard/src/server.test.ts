import { request } from 'node:http';
import type { FeedEvent, FeedMessage, FeedStatus, FeedVolume } from '@headstart/protocol';
import { afterEach, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { CLIENT_MAX_QUEUED_EVENTS } from './constants';
import { startDashboard, type Dashboard } from './server';
import type { FeedSource } from './source';

/** A node's status held in memory: the tests change it and emit events as a node would. */
function memorySource(volumes: FeedVolume[] = []): FeedSource & { volumes: FeedVolume[]; emit(e: FeedEvent): void } {
  const listeners = new Set<(e: FeedEvent) => void>();
  return {
    volumes,
    status: (): FeedStatus => ({ time: Date.now(), node: 'n1', volumes: [...volumes] }),
    subscribe(l) {
      listeners.add(l);
      return () => listeners.delete(l);
    },
    emit(e) {
      for (const l of listeners) l(e);
    },
  };
}

function volume(id: string, openSnapshot = 1): FeedVolume {
  return {
    id, name: id, role: 'primary', epoch: 1, size: 1 << 20, blockSize: 4096, openSnapshot, latestClosed: openSnapshot - 1, committed: null,
    latestClosedPoint: null, committedPoint: null, nextCloseAt: null, sinks: [],
  };
}

let dash: Dashboard | undefined;
afterEach(async () => {
  await dash?.stop();
  dash = undefined;
});

const TOKEN = 'unit-test-token';

/** Raw HTTP GET with any headers (fetch cannot set Host). */
function get(url: string, headers: Record<string, string> = {}): Promise<{ status: number; headers: Record<string, string | string[] | undefined> }> {
  return new Promise((resolve, reject) => {
    request(url, { headers }, (res) => {
      res.resume();
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers }));
    }).on('error', reject).end();
  });
}

/** Opens the feed; resolves with the socket and a reader of the next messages, or rejects with the HTTP status. */
function feed(url: string, headers: Record<string, string> = {}): Promise<{ ws: WebSocket; next(): Promise<FeedMessage> }> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url, { headers });
    const queue: FeedMessage[] = [];
    const waiters: ((m: FeedMessage) => void)[] = [];
    ws.on('message', (d) => {
      const m = JSON.parse(String(d)) as FeedMessage;
      const w = waiters.shift();
      if (w) w(m);
      else queue.push(m);
    });
    ws.on('unexpected-response', (_req, res) => reject(new Error(`HTTP ${res.statusCode}`)));
    ws.on('error', reject);
    ws.on('open', () => resolve({ ws, next: () => (queue.length > 0 ? Promise.resolve(queue.shift()!) : new Promise((r) => waiters.push(r))) }));
  });
}

describe('startDashboard access rules', () => {
  it('refuses to bind anything but loopback without a token', async () => {
    for (const host of ['0.0.0.0', '::', '192.0.2.1', 'localhost']) {
      await expect(startDashboard({ host, source: memorySource() })).rejects.toMatchObject({ code: 'DASHBOARD_UNPROTECTED' });
    }
    dash = await startDashboard({ host: '::1', source: memorySource() }).catch(() => startDashboard({ host: '127.0.0.1', source: memorySource() }));
    expect(dash.url).toMatch(/^http:\/\/(\[::1\]|127\.0\.0\.1):\d+\/$/);
  });

  it('rejects bad options with a stable code', async () => {
    await expect(startDashboard({ port: 70000, source: memorySource() })).rejects.toMatchObject({ code: 'DASHBOARD_BAD_OPTION' });
    await expect(startDashboard({ token: '', source: memorySource() })).rejects.toMatchObject({ code: 'DASHBOARD_BAD_OPTION' });
  });

  it('with a token, every request and the feed need it', async () => {
    dash = await startDashboard({ token: TOKEN, source: memorySource([volume('v1')]) });
    const u = dash.url;
    expect((await get(u)).status).toBe(401);
    expect((await get(`${u}app.js?token=nope`)).status).toBe(401);
    expect((await get(`${u}app.css`, { Authorization: 'Bearer nope' })).status).toBe(401);
    const page = await get(`${u}?token=${TOKEN}`);
    expect(page.status).toBe(200);
    expect(String(page.headers['set-cookie'])).toMatch(/hs_dashboard=.*HttpOnly; SameSite=Strict/);
    expect(page.headers['referrer-policy']).toBe('no-referrer');
    expect((await get(`${u}app.js`, { Authorization: `Bearer ${TOKEN}` })).status).toBe(200);
    expect((await get(`${u}app.css`, { Cookie: `hs_dashboard=${TOKEN}` })).status).toBe(200);
    expect((await get(`${u}nothing?token=${TOKEN}`)).status).toBe(404);

    const ws = u.replace('http', 'ws');
    await expect(feed(`${ws}feed`)).rejects.toThrow('HTTP 401');
    await expect(feed(`${ws}feed?token=wrong`)).rejects.toThrow('HTTP 401');
    await expect(feed(`${ws}elsewhere?token=${TOKEN}`)).rejects.toThrow('HTTP 404');
    await expect(feed(`${ws}feed?token=${TOKEN}`, { Origin: 'http://evil.example' })).rejects.toThrow('HTTP 403');
    const ok = await feed(`${ws}feed`, { Authorization: `Bearer ${TOKEN}` });
    const hello = await ok.next();
    expect(hello.type).toBe('hello');
    ok.ws.close();
  });

  it('without a token, answers only to loopback host names (no DNS rebinding)', async () => {
    dash = await startDashboard({ source: memorySource() });
    expect((await get(dash.url)).status).toBe(200);
    expect((await get(dash.url, { Host: 'localhost' })).status).toBe(200);
    expect((await get(dash.url, { Host: 'evil.example' })).status).toBe(401);
    expect((await get(dash.url, { Host: `evil.example:${dash.port}` })).status).toBe(401);
  });
});

describe('the feed', () => {
  it('sends hello, then only what changed, events in order, and removals', async () => {
    const src = memorySource([volume('v1'), volume('v2')]);
    dash = await startDashboard({ source: src, statusIntervalMs: 20 });
    const c = await feed(`${dash.url.replace('http', 'ws')}feed`);
    const hello = await c.next();
    if (hello.type !== 'hello') throw new Error(hello.type);
    expect(hello.version).toBe(1);
    expect(hello.status.volumes.map((v) => v.id)).toEqual(['v1', 'v2']);

    src.volumes[0] = volume('v1', 2);
    src.emit({ type: 'snapshot-closed', time: 1, volume: 'v1', n: 1 });
    src.emit({ type: 'status', time: 2, volumes: [] }); // a nudge, never forwarded
    src.emit({ type: 'snapshot-committed', time: 3, volume: 'v1', n: 1 });
    const seen: FeedMessage[] = [];
    while (!seen.some((m) => m.type === 'events') || !seen.some((m) => m.type === 'update' && m.volumes.length > 0)) seen.push(await c.next());
    const upd = seen.find((m) => m.type === 'update' && m.volumes.length > 0);
    if (upd?.type !== 'update') throw new Error('no update');
    expect(upd.volumes.map((v) => v.id)).toEqual(['v1']); // v2 did not change
    expect(upd.volumes[0].openSnapshot).toBe(2);
    const ev = seen.find((m) => m.type === 'events');
    if (ev?.type !== 'events') throw new Error('no events');
    expect(ev.events.map((e) => e.type)).toEqual(['snapshot-closed', 'snapshot-committed']);
    expect(ev.dropped).toBe(0);

    src.volumes.splice(1, 1);
    for (;;) {
      const m = await c.next();
      if (m.type === 'update' && m.removed.length > 0) {
        expect(m.removed).toEqual(['v2']);
        break;
      }
    }
    c.ws.close();
  });

  it('a browser that connects later gets the remembered events and snapshot records', async () => {
    const src = memorySource([volume('v1')]);
    dash = await startDashboard({ source: src, statusIntervalMs: 20 });
    src.emit({ type: 'snapshot-closed', time: 1, volume: 'v1', n: 1 });
    const record = { volume: 'v1', sink: 's', n: 1, scheduledAt: 1, presendStartAt: null, closedAt: 1, committedAt: 5, lagMs: 4, sentBytes: 4096, minimalBytes: 4096 };
    src.emit({ type: 'snapshot', time: 5, record });
    const c = await feed(`${dash.url.replace('http', 'ws')}feed`);
    const hello = await c.next();
    if (hello.type !== 'hello') throw new Error(hello.type);
    expect(hello.events.map((e) => e.type)).toEqual(['snapshot-closed']);
    expect(hello.snapshots).toEqual([record]);
    c.ws.close();
  });

  it('keeps memory bounded for a browser that stops reading', async () => {
    const big = Array.from({ length: 50 }, (_, i) => volume(`v${i}`));
    const src = memorySource(big);
    dash = await startDashboard({ source: src, statusIntervalMs: 10 });
    const c = await feed(`${dash.url.replace('http', 'ws')}feed`);
    await c.next(); // hello
    // Stop reading: the server's socket buffers fill, then it must hold back and coalesce.
    (c.ws as unknown as { _socket: { pause(): void; resume(): void } })._socket.pause();
    const pad = 'x'.repeat(2000);
    for (let round = 0; round < 40; round++) {
      for (let i = 0; i < 50; i++) src.volumes[i] = { ...volume(`v${i}`, round + 2), name: `${pad}${round}` };
      for (let i = 0; i < 200; i++) src.emit({ type: 'error', time: round, volume: null, code: 'X', message: pad });
      await new Promise((r) => setTimeout(r, 15));
    }
    const [b] = dash.clients();
    expect(b.queuedEvents).toBeLessThanOrEqual(CLIENT_MAX_QUEUED_EVENTS);
    expect(b.dropped).toBeGreaterThan(0);
    // Socket buffer: at most the high-water mark plus the frames of one flush.
    expect(b.bufferedBytes).toBeLessThan(4 * 1024 * 1024);
    (c.ws as unknown as { _socket: { resume(): void } })._socket.resume();
    let dropped = 0;
    let lastName = '';
    while (dropped === 0 || !lastName.endsWith('39')) {
      const m = await c.next();
      if (m.type === 'events') dropped += m.dropped;
      if (m.type === 'update' && m.volumes.length > 0) lastName = m.volumes[0].name;
    }
    expect(dropped).toBeGreaterThan(0); // told how many it missed
    expect(lastName.endsWith('39')).toBe(true); // and reaches the newest status
    c.ws.close();
  });
});
