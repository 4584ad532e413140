import { startDashboard } from '@headstart/dashboard';
import { it } from 'vitest';
import { openBrowser } from './browser';
import { SyntheticFleet } from './synthetic-fleet';
it('debug', async () => {
  const fleet = new SyntheticFleet(50, 3);
  const d = await startDashboard({ source: fleet });
  const b = await openBrowser();
  const page = await b.newPage();
  page.on('console', (m) => console.log('PAGE', m.text()));
  await page.goto(d.url);
  const cdp = await page.context().newCDPSession(page);
  await cdp.send('Performance.enable');
  let prev: Record<string, number> = {};
  for (let i = 0; i < 9; i++) {
    await new Promise((r) => setTimeout(r, 1000));
    if (i === 2) { console.log('hide events'); await page.addStyleTag({ content: '#events{display:none}' }); }
    if (i === 4) { console.log('hide detail'); await page.addStyleTag({ content: '#detail{display:none}' }); }
    if (i === 6) { console.log('hide overview'); await page.addStyleTag({ content: '#overview{display:none}' }); }
    const p = await page.evaluate(() => { const h = (window as any).headstartDashboard; return { m: h.messages, feed: h.feed, lt: h.longTasks.slice(-3), ap: h.applyMs.slice(-3).map(Math.round), rm: h.renderMs.slice(-5).map(Math.round), row: document.querySelector('#sink-rows .row[data-volume="vol-37"][data-sink="site-2"]')?.getAttribute('data-health'), link: document.querySelector('#sink-rows .row[data-volume="vol-37"][data-sink="site-2"] [data-col=link]')?.textContent }; });
    const mm = Object.fromEntries(((await cdp.send('Performance.getMetrics')) as any).metrics.map((x: any) => [x.name, x.value]));
    const dd = Object.fromEntries(['ThreadTime', 'ProcessTime', 'TaskDuration', 'ScriptDuration', 'LayoutDuration', 'RecalcStyleDuration', 'LayoutCount', 'RecalcStyleCount', 'Nodes'].map((k) => [k, Math.round(((mm[k] ?? 0) - (prev[k] ?? 0)) * (k.endsWith('Duration') ? 1000 : 1))]));
    prev = mm;
    console.log(JSON.stringify(p), JSON.stringify(dd));
  }
  await b.close(); await d.stop(); fleet.stop();
});
