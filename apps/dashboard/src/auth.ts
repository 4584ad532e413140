/**
 * Who may see the dashboard. With a token, every request and the feed's upgrade must carry
 * it (?token=, `Authorization: Bearer`, or the cookie set when the page was opened with
 * ?token=); compared in constant time. Without a token the server binds loopback only,
 * and still refuses requests whose Host header names anything but loopback, so a web page
 * elsewhere cannot reach it by DNS rebinding. A feed upgrade from a page of another origin
 * is refused either way (cross-site WebSocket hijacking).
 */
import { createHash, timingSafeEqual } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import { isIP } from 'node:net';
import { TOKEN_COOKIE } from './constants';

/** 127.0.0.0/8 and ::1 only: names can resolve elsewhere, so they are not trusted. */
export function isLoopbackAddress(host: string): boolean {
  const h = host.startsWith('[') && host.endsWith(']') ? host.slice(1, -1) : host;
  if (isIP(h) === 4) return h.startsWith('127.');
  if (isIP(h) === 6) return h === '::1' || h === '0:0:0:0:0:0:0:1' || h.startsWith('::ffff:127.');
  return false;
}

/** The Host header of a request to a token-less dashboard: a loopback address or localhost, with any port. */
export function isLoopbackHostHeader(hostHeader: string | undefined): boolean {
  if (!hostHeader) return false;
  const m = /^(\[[^\]]+\]|[^:]+)(?::\d+)?$/.exec(hostHeader);
  if (!m) return false;
  return m[1].toLowerCase() === 'localhost' || isLoopbackAddress(m[1]);
}

function digest(s: string): Buffer {
  return createHash('sha256').update(s).digest();
}

function cookieValue(header: string | undefined, name: string): string | null {
  if (!header) return null;
  for (const part of header.split(';')) {
    const i = part.indexOf('=');
    if (i > 0 && part.slice(0, i).trim() === name) {
      try {
        return decodeURIComponent(part.slice(i + 1).trim());
      } catch {
        return null;
      }
    }
  }
  return null;
}

/** How the request proved the token, or null if it did not. */
export function presentedToken(req: IncomingMessage, url: URL, token: string): 'query' | 'header' | 'cookie' | null {
  const want = digest(token);
  const ok = (s: string | null | undefined) => typeof s === 'string' && timingSafeEqual(digest(s), want);
  const auth = req.headers.authorization;
  if (auth && /^Bearer /i.test(auth) && ok(auth.slice(7).trim())) return 'header';
  if (ok(url.searchParams.get('token'))) return 'query';
  if (ok(cookieValue(req.headers.cookie, TOKEN_COOKIE))) return 'cookie';
  return null;
}

/** An Origin header (browsers always send one on a WebSocket upgrade) must name this server. */
export function sameOrigin(req: IncomingMessage): boolean {
  const origin = req.headers.origin;
  if (origin === undefined) return true; // not a browser: nothing to hijack
  try {
    return new URL(origin).host === req.headers.host;
  } catch {
    return false;
  }
}

export function tokenCookie(token: string): string {
  return `${TOKEN_COOKIE}=${encodeURIComponent(token)}; HttpOnly; SameSite=Strict; Path=/`;
}
