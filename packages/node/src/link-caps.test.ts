/**
 * Link caps that follow the clock, in a running node: the cap its links share is the
 * window's while the window holds and the plain cap after it, without a restart; an
 * operator's `rate` holds over the windows until `rate auto`.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { validateConfig } from './config';
import { metricsRegistry } from './metrics';
import { toFeedStatus } from './dashboard';
import { silentLogger } from './logger';
import { startNode, type HeadstartNode } from './node';

let node: HeadstartNode | null = null;
let dir = '';
afterEach(async () => {
  await node?.stop();
  node = null;
  if (dir) await rm(dir, { recursive: true, force: true });
});

/** Local time of day `offsetMs` from now, as a window bound ("HH:MM:SS"). */
function clock(offsetMs: number): string {
  const d = new Date(Date.now() + offsetMs);
  return [d.getHours(), d.getMinutes(), d.getSeconds()].map((x) => String(x).padStart(2, '0')).join(':');
}

describe('link caps with windows', () => {
  it('follow the clock in a running node, and yield to an operator until rate auto', async () => {
    dir = await mkdtemp(join(tmpdir(), 'hs-link-caps-'));
    const config = validateConfig(
      {
        node: { name: 'a', dataDir: join(dir, 'data'), secret: 'a-long-enough-secret' },
        listen: { nbd: '127.0.0.1:0', admin: '127.0.0.1:0' },
        linkCap: '80MB/s',
        // The node-wide cap's window starts in an hour: it does not hold now.
        linkCapWindows: [{ days: 'daily', from: clock(3_600_000), to: clock(3_660_000), rate: '1MB/s' }],
        // The peer's first window ends 8 s from now (time enough for the node to start on a
        // loaded machine). Nothing listens at its url: the link keeps trying, which is all
        // this test needs of it.
        peers: [{ name: 'site-b', url: 'ws://127.0.0.1:9', rateLimit: '50MB/s', rateWindows: [{ from: clock(-10_000), to: clock(8_000), rate: '2MB/s' }, { from: clock(-10_000), to: clock(60_000), rate: 'none' }] }],
        volumes: [{ name: 'vol', size: '8MiB', schedule: { every: '1h' }, sinks: ['site-b'] }],
      },
      'test',
      dir,
    );
    node = await startNode(config, silentLogger());
    const n = node;
    const cap = (peer: string | null) => n.status().linkCaps.find((c) => c.peer === peer)!;
    const sinkRate = () => n.status().volumes[0].sinks.find((s) => s.name === 'site-b')!.rateLimit;
    // What the dashboard is told binds the link, and why.
    const capReason = () => toFeedStatus(n.status()).volumes[0].sinks[0].capReason;

    // In the first window: its rate, for the links too (the tighter of peer and node caps).
    expect(cap('site-b')).toMatchObject({ rateLimit: 2e6, setBy: 'window', windows: 2 });
    expect(cap('site-b').window).toMatch(/^daily \d\d:\d\d:\d\d-/);
    expect(cap(null)).toMatchObject({ rateLimit: 80e6, setBy: 'config', window: null, windows: 1 });
    expect(sinkRate()).toBe(2e6);
    expect(capReason()).toMatch(/^peer site-b, window daily \d\d:\d\d:\d\d-\d\d:\d\d:\d\d$/);
    const metrics = await metricsRegistry(n).metrics();
    expect(metrics).toContain('headstart_link_cap_bytes{scope="peer",peer="site-b",set_by="window"} 2000000');
    expect(metrics).toContain('headstart_link_cap_bytes{scope="node",peer="",set_by="config"} 80000000');
    const until = cap('site-b').until!;
    expect(until).toBeGreaterThan(Date.now());
    expect(until).toBeLessThanOrEqual(Date.now() + 8_000);

    // The first window ends; the second (no cap) takes over by itself.
    await new Promise((r) => setTimeout(r, until - Date.now() + 200));
    expect(cap('site-b')).toMatchObject({ rateLimit: null, setBy: 'window' });
    expect(sinkRate()).toBe(80e6);
    expect(capReason()).toBe('node-wide, configured');

    // An operator's cap holds over the windows; auto hands it back to them.
    const set = n.setRateLimit('site-b', 5e6);
    expect(set).toMatchObject({ peer: 'site-b', rateLimit: 5e6, links: 1, cap: { setBy: 'operator', until: null } });
    expect(sinkRate()).toBe(5e6);
    expect(capReason()).toBe('peer site-b, set by an operator');
    expect(n.setRateLimit('site-b', 'auto').cap).toMatchObject({ rateLimit: null, setBy: 'window' });
    expect(sinkRate()).toBe(80e6);
    expect(n.setRateLimit(null, 'auto').cap).toMatchObject({ peer: null, rateLimit: 80e6, setBy: 'config' });
  }, 30_000);

  it('refuses windows an operator could misread', () => {
    const base = { node: { name: 'a', dataDir: '/tmp/x' } };
    const bad = (w: object, path: string, message: RegExp) => {
      let said = '';
      try {
        validateConfig({ ...base, linkCapWindows: [w] }, 'test', '/tmp');
      } catch (err) {
        said = (err as Error).message;
      }
      expect(said, JSON.stringify(w)).toMatch(message);
      expect(said).toContain(`${path}:`);
    };
    bad({ days: 'weekdays', from: '08:00', to: '18:00', rate: '1MB/s' }, 'linkCapWindows[0].days', /not a list of days/);
    bad({ from: '8am', to: '18:00', rate: '1MB/s' }, 'linkCapWindows[0].from', /not a time of day/);
    bad({ from: '08:00', to: '25:00', rate: '1MB/s' }, 'linkCapWindows[0].to', /not a time of day/);
    bad({ from: '08:00', to: '18:00', rate: 'fast' }, 'linkCapWindows[0].rate', /not a rate: "fast"/);
    bad({ from: '08:00', to: '18:00' }, 'linkCapWindows[0].rate', /a window needs a rate/);
    bad({ from: '08:00', to: '18:00', rate: '1MB/s', hours: 3 }, 'linkCapWindows[0]', /hours/);
  });
});
