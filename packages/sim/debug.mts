import { loadWorkloads, simulate, constantLink, meanWriteRate } from '@headstart/sim';
const [path, I, x, every] = [process.argv[2], Number(process.argv[3]), Number(process.argv[4]), Number(process.argv[5] ?? 300)];
const [w] = await loadWorkloads(path, 'x');
let lastPrint = -1;
const r = simulate(w, { interval: I, link: constantLink(meanWriteRate(w) * x), policy: 'predictive', onTick(now, p) {
  if (Math.floor(now / every) === lastPrint) return; lastPrint = Math.floor(now / every);
  const s = p.status(now);
  console.log(`t=${now.toFixed(0)} open=${s.open} D=${(s.D/1e6).toFixed(1)}MB B=${((s.B??0)/1e3).toFixed(0)}KB/s TS=${s.TS.toFixed(0)} start=${s.predictedStartAt.toFixed(0)} started=${s.started} dirty=${(s.dirtyBytes/1e6).toFixed(1)} present=${(s.presentBytes/1e6).toFixed(1)} coll=${(s.collidedBytes/1e6).toFixed(2)} closed=${(s.closedBytes/1e6).toFixed(1)} rnew=${(s.newDirtyRate/1e3).toFixed(0)}KB/s`);
}});
for (const s of r.snapshots) console.log(`n=${s.n} M=${(s.M/1e6).toFixed(1)} S/M=${(s.S/s.M).toFixed(4)} lag=${s.lag.toFixed(1)}`);
console.log(r.totals);
