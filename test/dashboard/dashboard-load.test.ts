/**
 * 50 volumes x 3 sinks updating every second: the page must stay responsive (no long task
 * over 200 ms on the renderer's main thread, applying an update stays small, the main
 * thread mostly idle) and a link cut must still show within 2 s under that load.
 *
 * Long tasks are measured twice: wall time (PerformanceObserver 'longtask', and the trace),
 * and CPU time from Chromium's trace. On a shared 2-core machine running other tests, wall
 * times stretch by however long the renderer waited for a core (3-10x seen at load 12), so
 * the bound applies to a task's CPU time, which is what the page controls; both are printed.
 */
import { startDashboard, type Dashboard } from '@headstart/dashboard';
import type { Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openBrowser, screenshot, traceRendererTasks, type TestBrowser } from './browser';
import { SyntheticFleet } from './synthetic-fleet';

let fleet: SyntheticFleet;
let dashboard: Dashboard;
let browser: TestBrowser;
let page: Page;

interface Perf {
  messages: number;
  applyMs: number[];
  longTasks: number[];
  ready: boolean;
}
const perf = () => page.evaluate(() => (window as unknown as { headstartDashboard: Perf }).headstartDashboard);

beforeAll(async () => {
  fleet = new SyntheticFleet(50, 3);
  dashboard = await startDashboard({ source: fleet });
  browser = await openBrowser();
  page = await browser.newPage();
});

afterAll(async () => {
  await browser?.close();
  await dashboard?.stop();
  fleet?.stop();
});

const pct = (a: number[], p: number) => [...a].sort((x, y) => x - y)[Math.min(a.length - 1, Math.floor(p * a.length))] ?? 0;

describe('dashboard at 50 volumes x 3 sinks', () => {
  it('stays responsive and still shows a cut link within 2 s', async () => {
    await page.goto(dashboard.url);
    await page.waitForFunction(() => document.querySelectorAll('#sink-rows .row').length === 150, null, { timeout: 15_000 });
    const startLong = (await perf()).longTasks.length;
    const startMsgs = (await perf()).messages;
    const startApply = (await perf()).applyMs.length;
    const w0 = Date.now();
    const tasks = await traceRendererTasks(page, () => new Promise((r) => setTimeout(r, 8000)));
    const wallMs = Date.now() - w0;
    const t0 = Date.now();
    fleet.forced.set('vol-37/site-2', 'disconnected');
    await page.locator('#sink-rows .row[data-volume="vol-37"][data-sink="site-2"][data-health="broken"]').waitFor({ state: 'attached', timeout: 2000 });
    const shownMs = Date.now() - t0;
    const p = await perf();
    const longTasks = p.longTasks.slice(startLong);
    const apply = p.applyMs.slice(startApply);
    const round = (x: number) => Math.round(x * 10) / 10;
    const figures = {
      messages: p.messages - startMsgs,
      applyP50: round(pct(apply, 0.5)), applyP95: round(pct(apply, 0.95)), applyMax: round(Math.max(...apply)),
      tasks: tasks.length,
      mainThreadCpuShare: Math.round((100 * tasks.reduce((a, t) => a + t.cpuMs, 0)) / wallMs) / 100,
      longTasksObserved: longTasks.length, longestObservedWallMs: Math.max(0, ...longTasks),
      longestTaskWallMs: round(Math.max(0, ...tasks.map((t) => t.wallMs))), longestTaskCpuMs: round(Math.max(0, ...tasks.map((t) => t.cpuMs))),
      tasksOver50msCpu: tasks.filter((t) => t.cpuMs > 50).length,
      brokenShownMs: shownMs,
    };
    console.log(`dashboard load 50x3: ${JSON.stringify(figures)}`);
    await screenshot(page, 'fleet-50x3');
    expect(figures.messages).toBeGreaterThan(10); // updates and events did flow
    expect(figures.tasks).toBeGreaterThan(20); // the trace saw the page at work (8 s of updates)
    expect(figures.longestTaskCpuMs).toBeLessThanOrEqual(200);
    expect(figures.mainThreadCpuShare).toBeLessThan(0.5); // the main thread is idle most of the time
    expect(figures.applyMax).toBeLessThan(200);
    expect(shownMs).toBeLessThanOrEqual(2000);
    expect(await page.locator('#summary [data-health="broken"]').textContent()).toBe('1 broken');

    // RPO age against its 1 min target: over it is behind, over twice it is broken, in words too.
    fleet.forcedRpo.set('vol-12/site-0', 90_000);
    const stale = page.locator('#sink-rows .row[data-volume="vol-12"][data-sink="site-0"]');
    await page.locator('#sink-rows .row[data-volume="vol-12"][data-sink="site-0"][data-health="behind"]').waitFor({ state: 'attached', timeout: 2000 });
    expect(await stale.locator('[data-col="health"]').textContent()).toBe('behindRPO age over target');
    fleet.forcedRpo.set('vol-12/site-0', 130_000);
    await page.locator('#sink-rows .row[data-volume="vol-12"][data-sink="site-0"][data-health="broken"]').waitFor({ state: 'attached', timeout: 2000 });
    expect(await stale.locator('[data-col="rpo"]').getAttribute('class')).toBe('over');
    expect(await page.locator('#summary [data-health="broken"]').textContent()).toBe('2 broken');
    // Problems come first.
    expect(await page.locator('#sink-rows .row').nth(0).getAttribute('data-health')).toBe('broken');
    expect(await page.locator('#sink-rows .row').nth(1).getAttribute('data-health')).toBe('broken');
  });

  it('a dead feed never looks healthy: every row says so within 2 s', async () => {
    const t0 = Date.now();
    await dashboard.stop();
    await page.waitForFunction(() => document.querySelectorAll('#sink-rows .row[data-health="unknown"]').length === 150, null, { timeout: 2000, polling: 50 });
    expect(Date.now() - t0).toBeLessThanOrEqual(2000);
    expect(await page.locator('#feed-state').textContent()).toContain('feed lost');
    expect(await page.locator('#summary [data-health="healthy"]').textContent()).toBe('0 healthy');
    await screenshot(page, 'feed-lost');
  });
});
