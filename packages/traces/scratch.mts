import { readTrace } from '@headstart/traces';
for (const f of ['cloudphysics-vm.vscsi','hp-ajw-week.csv','postgres-pgbench.csv']) {
  const t0=Date.now();
  const s = await readTrace('/work/shared/traces/'+f);
  let n=0,w=0,wb=0,last=0; const vols=new Set();
  for await (const r of s) { n++; if (r.op==='write'){w++;wb+=r.length;} last=r.time; vols.add(r.volume); }
  console.log(f, s.format, n, w, wb, last, [...vols], s.stats.skipped, Date.now()-t0,'ms');
}
