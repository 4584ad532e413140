import { loadWorkloads, evaluate } from '@headstart/sim';
const path = process.argv[2]; const ivs = (process.argv[3] ?? '60,300,900,3600').split(',').map(Number); const xs=(process.argv[4] ?? '1.2,2,5').split(',').map(Number);
const ws = await loadWorkloads(path, path.split('/').pop()!);
for (const w of ws) for (const I of ivs) for (const x of xs) {
  if (w.duration < I) continue;
  const e = evaluate(w, I, x, { planner: JSON.parse(process.env.PL ?? '{}'), policies: ['predictive', 'oracle'] });
  const p = e.policies;
  const ok = p.predictive.redundancy_mean <= 1.01 && p.predictive.lag_mean_s <= 1.05*p.oracle.lag_mean_s + 1;
  console.log(`${process.env.PL} ${w.name} I=${I} x=${x} pred=${p.predictive.redundancy_mean.toFixed(4)}/${p.predictive.lag_mean_s.toFixed(1)} oracle=${p.oracle.lag_mean_s.toFixed(1)} ${ok?'OK':'MISS'}`);
}
