/**
 * 50 volumes x 3 sinks updating every second: the page must stay responsive (no long task
 * over 200 ms in Chromium's performance timeline, applying an update stays small, the main
 * thread mostly idle) and a link cut must still show within 2 s under that load.
 *
 * Long tasks are wall-clock durations: on a shared 2-core machine running other tests they
 * stretch by however long the renderer waited for a core (3-10x seen at load 12). So each
 * is also scaled by the window's ratio of main-thread CPU time (CDP ThreadTime) to task
 * wall time (TaskDuration): the estimated CPU time of the task, which is what the page
 * controls. Both figures are printed; the bound applies to the estimate.
 */
import { startDashboard, type Dashboard } from '@headstart/dashboard';
import type { Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openBrowser, screenshot, type TestBrowser } from './browser';
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
    const cdp = await page.context().newCDPSession(page);
    await cdp.send('Performance.enable');
    const metrics = async () => Object.fromEntries((await cdp.send('Performance.getMetrics')).metrics.map((m) => [m.name, m.value]));
    const m0 = await metrics();
    const w0 = Date.now();
    const startLong = (await perf()).longTasks.length;
    const startMsgs = (await perf()).messages;
    const startApply = (await perf()).applyMs.length;
    await new Promise((r) => setTimeout(r, 8000));
    const m1 = await metrics();
    const wallMs = Date.now() - w0;
    const t0 = Date.now();
    fleet.forced.set('vol-37/site-2', 'disconnected');
    await page.locator('#sink-rows .row[data-volume="vol-37"][data-sink="site-2"][data-health="broken"]').waitFor({ state: 'attached', timeout: 2000 });
    const shownMs = Date.now() - t0;
    const p = await perf();
    const longTasks = p.longTasks.slice(startLong);
    const apply = p.applyMs.slice(startApply);
    const cpuMs = (m1.ThreadTime - m0.ThreadTime) * 1000;
    const taskMs = (m1.TaskDuration - m0.TaskDuration) * 1000;
    const cpuPerWall = taskMs > 0 ? Math.min(1, cpuMs / taskMs) : 1;
    const round = (x: number) => Math.round(x * 10) / 10;
    const figures = {
      messages: p.messages - startMsgs,
      applyP50: round(pct(apply, 0.5)), applyP95: round(pct(apply, 0.95)), applyMax: round(Math.max(...apply)),
      mainThreadCpuShare: round(cpuMs / wallMs), taskCpuPerWall: round(cpuPerWall),
      longTasks: longTasks.length, longestTaskWallMs: Math.max(0, ...longTasks), longestTaskCpuMs: round(Math.max(0, ...longTasks) * cpuPerWall),
      brokenShownMs: shownMs,
    };
    console.log(`dashboard load 50x3: ${JSON.stringify(figures)}`);
    await screenshot(page, 'fleet-50x3');
    expect(figures.messages).toBeGreaterThan(10); // updates and events did flow
    expect(figures.longestTaskCpuMs).toBeLessThanOrEqual(200);
    expect(figures.mainThreadCpuShare).toBeLessThan(0.5); // the main thread is idle most of the time
    expect(figures.applyMax).toBeLessThan(200);
    expect(shownMs).toBeLessThanOrEqual(2000);
    expect(await page.locator('#summary [data-health="broken"]').textContent()).toBe('1 broken');
  });
});
