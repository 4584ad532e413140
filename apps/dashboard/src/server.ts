/**
 * DEV DOCS — the dashboard server.
 *
 * One HTTP server: GET / (the page), /app.js, /app.css, and the WebSocket feed at /feed.
 * Access: a token (see auth.ts) or, without one, loopback only. The feed (message shapes
 * in @headstart/protocol feed.ts): on connect a `hello` with the node's full status and
 * the history this server remembers (history.ts); then, every STATUS_INTERVAL_MS while
 * any browser watches, the server takes `source.status()` once, serialises each volume
 * once, and every client (client.ts) sends the volumes that changed for it plus the events
 * since its last frame. Events from `source.subscribe` are remembered (bounded) and queued
 * per client (bounded). A slow browser gets coalesced status and a count of dropped events,
 * never an unbounded buffer.
 */
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { HeadstartError } from '@headstart/errors';
import type { FeedEvent, FeedStatus } from '@headstart/protocol';
import { WebSocketServer, type WebSocket } from 'ws';
import { pageAssets, type PageAssets } from './assets';
import { isLoopbackAddress, isLoopbackHostHeader, presentedToken, sameOrigin, tokenCookie } from './auth';
import { FeedClient, type StatusFrame } from './client';
import { CLIENT_PING_MS, STATUS_INTERVAL_MS } from './constants';
import { FeedHistory } from './history';
import type { DashboardLogger, FeedSource } from './source';

export interface DashboardOptions {
  /** Address to bind; default 127.0.0.1. Anything but loopback needs a token. */
  readonly host?: string;
  /** 0 (default) picks a free port. */
  readonly port?: number;
  /** Required of every request when set. */
  readonly token?: string;
  readonly source: FeedSource;
  readonly logger?: DashboardLogger;
  /** Status push period (ms); default STATUS_INTERVAL_MS. */
  readonly statusIntervalMs?: number;
}

export interface Dashboard {
  /** http://host:port/ (without the token). */
  readonly url: string;
  readonly port: number;
  /** Browsers on the feed now, with what waits for each (tests, diagnostics). */
  clients(): { bufferedBytes: number; queuedEvents: number; dropped: number }[];
  stop(): Promise<void>;
}

const SECURITY_HEADERS = {
  'Content-Security-Policy': "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self' data:; base-uri 'none'; frame-ancestors 'none'",
  // The token may sit in the address bar: never leak it in a Referer.
  'Referrer-Policy': 'no-referrer',
  'X-Content-Type-Options': 'nosniff',
  'Cache-Control': 'no-store',
};

function checkOptions(o: DashboardOptions): { host: string; port: number } {
  const host = o.host ?? '127.0.0.1';
  const port = o.port ?? 0;
  if (!Number.isInteger(port) || port < 0 || port > 65535) throw new HeadstartError('DASHBOARD_BAD_OPTION', `dashboard port must be an integer 0-65535, not ${port}`);
  if (typeof host !== 'string' || host.length === 0) throw new HeadstartError('DASHBOARD_BAD_OPTION', 'dashboard host must be a non-empty address');
  if (o.token !== undefined && (typeof o.token !== 'string' || o.token.length === 0)) throw new HeadstartError('DASHBOARD_BAD_OPTION', 'dashboard token must be a non-empty string');
  if (o.token === undefined && !isLoopbackAddress(host)) {
    throw new HeadstartError('DASHBOARD_UNPROTECTED', `refusing to serve the dashboard on ${host} without a token: anyone who can reach it would see every volume; set a token or bind 127.0.0.1 / ::1`);
  }
  return { host, port };
}

function frameOf(s: FeedStatus): StatusFrame {
  const volumes = new Map<string, string>();
  for (const v of s.volumes) volumes.set(v.id, JSON.stringify(v));
  return { time: s.time, node: s.node, volumes };
}

export async function startDashboard(options: DashboardOptions): Promise<Dashboard> {
  const { host, port } = checkOptions(options);
  const { source, token, logger } = options;
  const assets = await pageAssets();
  const history = new FeedHistory();
  const seed = source.history?.();
  if (seed) {
    for (const r of seed.snapshots) history.add({ type: 'snapshot', time: r.committedAt ?? r.closedAt ?? r.scheduledAt, record: r });
    for (const e of seed.events) history.add(e);
  }
  const clients = new Set<FeedClient>();

  const allowed = (req: IncomingMessage, url: URL): ReturnType<typeof presentedToken> | 'loopback' | null =>
    token === undefined ? (isLoopbackHostHeader(req.headers.host) ? 'loopback' : null) : presentedToken(req, url, token);

  const http = createServer((req, res) => serve(req, res, assets));
  function serve(req: IncomingMessage, res: ServerResponse, a: PageAssets): void {
    const url = new URL(req.url ?? '/', 'http://dashboard.invalid');
    const how = allowed(req, url);
    if (how === null) {
      res.writeHead(401, { 'Content-Type': 'text/plain; charset=utf-8', 'WWW-Authenticate': 'Bearer realm="headstart"', ...SECURITY_HEADERS });
      res.end(token === undefined ? 'forbidden: this dashboard answers only to loopback host names\n' : 'unauthorized: open the dashboard with ?token=<token> or send Authorization: Bearer <token>\n');
      return;
    }
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.writeHead(405, { Allow: 'GET, HEAD', ...SECURITY_HEADERS }).end();
      return;
    }
    const send = (type: string, body: Buffer, extra: Record<string, string> = {}) => {
      res.writeHead(200, { 'Content-Type': type, 'Content-Length': body.length, ...SECURITY_HEADERS, ...extra });
      res.end(req.method === 'HEAD' ? undefined : body);
    };
    switch (url.pathname) {
      case '/':
      case '/index.html':
        send('text/html; charset=utf-8', a.html, how === 'query' && token !== undefined ? { 'Set-Cookie': tokenCookie(token) } : {});
        return;
      case '/app.js':
        send('text/javascript; charset=utf-8', a.js);
        return;
      case '/app.css':
        send('text/css; charset=utf-8', a.css);
        return;
      default:
        res.writeHead(404, { 'Content-Type': 'text/plain; charset=utf-8', ...SECURITY_HEADERS }).end('not found\n');
    }
  }

  // The browser never sends anything: a tiny maxPayload keeps a hostile one from costing memory.
  const wss = new WebSocketServer({ noServer: true, maxPayload: 1024, perMessageDeflate: false, clientTracking: false });
  http.on('upgrade', (req: IncomingMessage, socket: Socket, head: Buffer) => {
    const url = new URL(req.url ?? '/', 'http://dashboard.invalid');
    const refuse = (status: string) => {
      socket.end(`HTTP/1.1 ${status}\r\nConnection: close\r\nContent-Length: 0\r\n\r\n`);
    };
    if (url.pathname !== '/feed') return refuse('404 Not Found');
    if (allowed(req, url) === null) return refuse('401 Unauthorized');
    if (!sameOrigin(req)) return refuse('403 Forbidden');
    wss.handleUpgrade(req, socket, head, (ws) => connected(ws));
  });

  function status(): FeedStatus | null {
    try {
      return source.status();
    } catch (err) {
      logger?.warn({ err }, 'dashboard: the node failed to report its status');
      return null;
    }
  }

  function connected(ws: WebSocket): void {
    const s = status() ?? { time: Date.now(), node: '', volumes: [] };
    const c = new FeedClient(ws);
    clients.add(c);
    ws.on('pong', () => (c.alive = true));
    ws.on('message', () => ws.close(1008, 'the feed is one-way'));
    ws.on('error', () => ws.terminate());
    ws.on('close', () => clients.delete(c));
    c.hello(frameOf(s), history.snapshots(), history.recentEvents());
  }

  const off = source.subscribe((e: FeedEvent) => {
    history.add(e);
    if (e.type === 'status') return; // a nudge only: the next tick sends status()
    for (const c of clients) c.offerEvent(e);
  });

  const tick = setInterval(() => {
    if (clients.size === 0) return;
    const s = status();
    const frame = s ? frameOf(s) : null;
    for (const c of clients) {
      if (frame) c.offerStatus(frame);
      c.flush();
    }
  }, options.statusIntervalMs ?? STATUS_INTERVAL_MS);

  const ping = setInterval(() => {
    for (const c of clients) {
      if (!c.alive) {
        c.ws.terminate();
        continue;
      }
      c.alive = false;
      c.ws.ping();
    }
  }, CLIENT_PING_MS);

  try {
    await new Promise<void>((resolve, reject) => {
      http.once('error', reject);
      http.listen(port, host, () => {
        http.off('error', reject);
        resolve();
      });
    });
  } catch (err) {
    clearInterval(tick);
    clearInterval(ping);
    off();
    throw new HeadstartError('DASHBOARD_BAD_OPTION', `cannot listen on ${host}:${port}: ${(err as Error).message}`, { cause: err });
  }
  const bound = (http.address() as AddressInfo).port; // a TCP listener always has an AddressInfo
  const url = `http://${host.includes(':') ? `[${host}]` : host}:${bound}/`;
  let stopped = false;
  logger?.info({ url, token: token !== undefined }, 'dashboard listening');

  return {
    url,
    port: bound,
    clients: () => [...clients].map((c) => c.backlog),
    async stop() {
      if (stopped) return;
      stopped = true;
      clearInterval(tick);
      clearInterval(ping);
      off();
      // Say goodbye (1001), give browsers a moment to answer, then cut what is left.
      const closing = [...clients].map((c) => new Promise<void>((resolve) => {
        c.ws.once('close', () => resolve());
        c.ws.close(1001, 'dashboard stopping');
      }));
      await Promise.race([Promise.all(closing), new Promise((r) => setTimeout(r, 200))]);
      for (const c of clients) c.ws.terminate();
      clients.clear();
      await new Promise<void>((resolve) => {
        http.close(() => resolve());
        http.closeAllConnections();
      });
    },
  };
}
