import { loadWorkloads, simulate, constantLink, meanWriteRate } from '@headstart/sim';
const [path, I, x] = [process.argv[2], Number(process.argv[3]), Number(process.argv[4])];
const extra = JSON.parse(process.argv[5] ?? '{}');
const [w] = await loadWorkloads(path, 'x');
let last: any = null; const per: any[] = [];
const r = simulate(w, { interval: I, link: constantLink(meanWriteRate(w) * x), policy: 'predictive', planner: extra, onTick(now, p) {
  const s = p.status(now); if (last && s.open !== last.open) per.push(last); last = s;
}});
r.snapshots.forEach((s, i) => { const st = per[i]; console.log(`n=${s.n} M=${(s.M/1e6).toFixed(1)} S/M=${(s.S/s.M).toFixed(4)} lag=${s.lag.toFixed(1)} exp=${st ? (st.expectedResendBytes/1e6).toFixed(2) : '?'} coll=${st ? (st.collidedBytes/1e6).toFixed(2) : '?'} f=${st?.calibration.toFixed(2)}`); });
console.log(r.totals);
