/**
 * The dashboard as the README's main job serves it: `headstart demo` (real nodes, real
 * replication, the node's own feed) opened in Debian's Chromium. The row turns healthy, the
 * committed point number moves as points close and commit, and Ctrl-C (SIGINT) stops the
 * demo cleanly.
 */
import { spawn } from 'node:child_process';
import { afterAll, describe, expect, it } from 'vitest';
import { CLI } from '../helpers/cli';
import { openBrowser, screenshot, type TestBrowser } from './browser';

let browser: TestBrowser | null = null;
afterAll(async () => {
  await browser?.close();
});

describe('dashboard of a running demo', () => {
  it('shows a healthy replica whose committed point moves, then the demo stops on SIGINT', async () => {
    const demo = spawn(process.execPath, [CLI, 'demo', '--interval', '2s', '--size', '64MiB'], { stdio: ['ignore', 'pipe', 'pipe'] });
    let err = '';
    demo.stderr.on('data', (d: Buffer) => (err += d.toString()));
    const exited = new Promise<number | null>((resolve) => demo.on('exit', (code) => resolve(code)));
    try {
      const url = await new Promise<string>((resolve, reject) => {
        const t = setTimeout(() => reject(new Error(`no dashboard URL from the demo:\n${err}`)), 60_000);
        const look = () => {
          const m = /dashboard:\s+(http:\/\/\S+)/.exec(err);
          if (m) {
            clearTimeout(t);
            resolve(m[1]);
          } else setTimeout(look, 100);
        };
        look();
      });
      browser = await openBrowser();
      const page = await browser.newPage();
      await page.goto(url);
      const row = page.locator('#sink-rows .row[data-volume="demo"][data-sink="site-b"]');
      await row.and(page.locator('[data-health="healthy"]')).waitFor({ timeout: 30_000 });
      const committed = async () => Number(/#(\d+)/.exec((await row.locator('[data-col="committed"]').textContent()) ?? '')?.[1] ?? -1);
      const first = await committed();
      await expect.poll(committed, { timeout: 20_000 }).toBeGreaterThanOrEqual(first + 2);
      await expect.poll(() => page.locator('#event-list li[data-type="snapshot-acked"]').count(), { timeout: 5000 }).toBeGreaterThan(1);
      // The staging cell names the point being shipped (#n, blocks staged / its blocks), never a blank.
      await expect.poll(async () => (await row.locator('[data-col="staging"]').textContent()) ?? '', { timeout: 10_000 }).toMatch(/^#\d+ \d+\/\d+/);
      // A fresh demo's planner has no saved model: the policy cell says it is learning.
      expect(await row.locator('[data-col="policy"]').textContent()).toBe('predictive');
      expect(await row.locator('[data-col="policy"]').getAttribute('title')).toBe('planner model learning since the node started');
      await screenshot(page, 'demo-node');
    } finally {
      demo.kill('SIGINT');
    }
    expect(await exited).toBe(0);
  }, 120_000);
});
