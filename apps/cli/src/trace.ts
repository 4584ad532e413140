/** Trace files for `headstart demo --trace`: any format @headstart/traces reads; writes only. */
import { readTrace } from '@headstart/traces';

export async function* readTraceWrites(path: string): AsyncGenerator<{ time: number; offset: number; length: number }> {
  const stream = await readTrace(path);
  for await (const r of stream) {
    if (r.op === 'write' && r.length > 0) yield { time: Math.max(0, r.time), offset: r.offset, length: r.length };
  }
}
