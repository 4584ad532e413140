// The evaluator's worker thread starts here: Node 20 does not run the parent's `--import`
// loader (tsx) in worker threads, so this registers tsx itself before loading the
// TypeScript worker (traces-worker.ts).
import { register } from 'tsx/esm/api';

register();
await import('./traces-worker.ts');
