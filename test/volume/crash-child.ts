/**
 * Child process for the crash test: opens (or creates) a volume and writes, closes points and
 * acknowledges forever, reporting every step BEFORE and AFTER it happens, until the parent
 * kills it with SIGKILL. `R` (ready) goes to stdout; every other line to the report file
 * named by the parent, with writeSync: it is in the kernel once the call returns, so a
 * SIGKILL cannot lose it. Not stdout: a pipe is written synchronously only while it has
 * room; once the parent falls behind reading (a loaded machine), Node queues the lines in
 * the child's memory, and a SIGKILL drops them while the writes they report have landed.
 *
 * Lines: `S id offset length byte` (write starts), `D id` (write done),
 *        `C` (close starts), `P n` (point n closed), `A n` (ack of n done), `F` (flush done).
 */
import { existsSync, openSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { createVolume, openVolume } from '@headstart/volume';

const [dir, seedArg, firstIdArg, reportPath] = process.argv.slice(2);
let seed = Number(seedArg) >>> 0 || 1;
const rand = (n: number) => {
  seed = (seed * 1103515245 + 12345) >>> 0;
  return (seed >>> 8) % n;
};
const SIZE = 64 * 4096;
const report = openSync(reportPath, 'w');
const out = (line: string) => writeSync(report, line + '\n');

const v = existsSync(join(dir, 'meta.lmdb')) ? await openVolume(dir) : await createVolume(dir, { size: SIZE });
if (v.sinks().length === 0) await v.addSink('replica');
process.stdout.write('R\n');
let id = Number(firstIdArg);
for (;;) {
  const r = rand(100);
  if (r < 80) {
    const offset = rand(8) === 0 ? rand(SIZE - 9000) : rand(64) * 4096;
    const length = rand(3) === 0 ? 1 + rand(9000) : 4096 * (1 + rand(3));
    const len = Math.min(length, SIZE - offset);
    const byte = 1 + (id % 255);
    out(`S ${id} ${offset} ${len} ${byte}`);
    await v.write(offset, Buffer.alloc(len, byte));
    out(`D ${id}`);
    id++;
  } else if (r < 92) {
    out('C');
    const p = await v.closeSnapshot();
    out(`P ${p.n}`);
  } else if (r < 97) {
    const s = v.sink('replica');
    const target = (v.latestClosed?.n ?? 0) - 2;
    if (target > (s.acked ?? s.baseline - 1)) {
      await v.acknowledge('replica', target);
      out(`A ${target}`);
    }
  } else {
    await v.flush();
    out('F');
  }
}
