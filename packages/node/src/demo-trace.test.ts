import { existsSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { HeadstartError } from '@headstart/errors';
import { runDemo } from './demo';
import { silentLogger } from './logger';
import type { TraceWrite } from './workload';

describe('demo --trace on a trace with a bad line', () => {
  it('stops at once with the trace error, and cleans up', async () => {
    // What readTraceWrites does on a malformed line deep in the file: a few writes, then the error.
    async function* writes(): AsyncGenerator<TraceWrite> {
      yield { time: 0, offset: 0, length: 4096 };
      yield { time: 0.01, offset: 4096, length: 4096 };
      throw new HeadstartError('TRACE_MALFORMED', 'bad.csv: msr trace, line 3001: unknown operation "Wrte"');
    }
    let dir = '';
    const started = Date.now();
    const run = runDemo({ forMs: 60_000, volumeSize: 8 << 20, trace: { writes: writes(), speedup: 1 }, dashboard: false, signal: new AbortController().signal, logger: silentLogger(), onReady: (info) => (dir = info.dir) });
    await expect(run).rejects.toThrow(/line 3001/);
    // Not after the run's 60 s: the run ends when its workload fails.
    expect(Date.now() - started).toBeLessThan(20_000);
    expect(dir).not.toBe('');
    expect(existsSync(dir)).toBe(false);
  }, 40_000);
});
