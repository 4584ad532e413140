import { startNbdServer } from '@headstart/nbd';
import { open, mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execFileSync } from 'node:child_process';
const dir = await mkdtemp(join(tmpdir(), 'diag-'));
const size = 256 << 20;
const fh = await open(join(dir, 'f'), 'w+'); await fh.truncate(size);
const mode = process.argv[2] ?? 'file';
const dev = {
  size, blockSize: 4096, readOnly: false,
  async read(o: number, l: number) { const b = Buffer.allocUnsafe(l); if (mode !== 'null') await fh.read(b, 0, l, o); return b; },
  async write(o: number, d: Uint8Array) { if (mode !== 'null') await fh.write(d, 0, d.length, o); },
  async writeZeroes() {}, async trim() {}, async flush() { await fh.datasync(); },
};
const server = await startNbdServer({ exports: { f: dev } });
const prof = process.argv[3] === 'prof';
let session: any;
if (prof) { const insp = await import('node:inspector'); session = new insp.Session(); session.connect(); await new Promise<void>(r => session.post('Profiler.enable', () => session.post('Profiler.start', () => r()))); }
for (const [rw, bs, d] of [['randwrite', '4k', 32], ['write', '1m', 8], ['read', '1m', 8]] as const) {
  const out = execFileSync('fio', ['--name=b', '--ioengine=nbd', `--uri=nbd://127.0.0.1:${server.port}/f`, `--rw=${rw}`, `--bs=${bs}`, `--iodepth=${d}`, '--size=256M', '--time_based', '--runtime=3', '--output-format=json']).toString();
  const j = JSON.parse(out.slice(out.indexOf('{'))).jobs[0];
  const s = rw.includes('read') ? j.read : j.write;
  console.log(mode, rw, bs, Math.round(s.iops), 'iops', Math.round(s.bw_bytes / 1e6), 'MB/s');
}
if (prof) { const p: any = await new Promise(r => session.post('Profiler.stop', (e: any, p: any) => r(p.profile))); (await import('node:fs')).writeFileSync('/tmp/nbdprof/diag.cpuprofile', JSON.stringify(p)); }
await server.stop(); process.exit(0);
