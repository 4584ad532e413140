// temporary experiment driver (to be deleted)
import { basename } from 'node:path';
import { evaluate, loadWorkloads } from '@headstart/sim';
const [file, ints, xs, json] = process.argv.slice(2);
const over = json ? JSON.parse(json) : {};
const ws = await loadWorkloads(file, basename(file));
for (const w of ws) for (const i of ints.split(',').map(Number)) for (const x of xs.split(',').map(Number)) {
  const e = evaluate(w, i, x, { planner: over, policies: ['oracle', 'predictive'] as any });
  const p = e.policies.predictive, o = e.policies.oracle;
  const ok = p.redundancy_mean <= 1.01 && p.lag_mean_s <= 1.05 * o.lag_mean_s + 1;
  console.log(`${w.name} ${i}s x${x}: pred red ${p.redundancy_mean.toFixed(4)} lag ${p.lag_mean_s.toFixed(1)} oracle ${o.lag_mean_s.toFixed(1)} ${ok ? 'ok' : 'MISS'}`);
}
