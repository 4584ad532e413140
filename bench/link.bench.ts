/**
 * Link: unthrottled loopback replication, end to end (source volume -> committed on the
 * replica, which runs as a separate process), against a plain file copy of the same bytes
 * on the same disk (cp + fsync), in one run. Also bytes on the wire per byte of block data.
 * The shipped point is one snapshot whose dirty set is the whole volume of random data,
 * sent with the at-snapshot policy (nothing before the close), so the time covers reading
 * the point, hashing, framing, the WebSocket, verifying, staging in LMDB, and the commit
 * (apply + fsync). Args: --size MiB (default 512, quick 128). HS_PROFILE_DIR=dir writes a CPU
 * profile of the replica process there.
 */
import { spawn, execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtemp, open, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { atSnapshotPolicy, startSource } from '@headstart/replication';
import { createVolume } from '@headstart/volume';
import { defineSuite, round } from './lib';

const RUNNER = fileURLToPath(new URL('../test/replication/replica-runner.ts', import.meta.url));
const SECRET = 'bench-link-secret';

function argValue(args: readonly string[], name: string): string | undefined {
  const i = args.indexOf(name);
  return i >= 0 ? args[i + 1] : undefined;
}

async function fileCopySeconds(src: string, dst: string): Promise<number> {
  const t0 = performance.now();
  await new Promise<void>((resolve, reject) => execFile('cp', ['--sparse=never', src, dst], (err) => (err ? reject(err) : resolve())));
  const fh = await open(dst, 'r+');
  await fh.datasync();
  await fh.close();
  return (performance.now() - t0) / 1000;
}

export default defineSuite({
  name: 'link',
  description: 'loopback replication end to end vs plain file copy; wire bytes per block byte',
  async run({ quick, args, log }) {
    const sizeMiB = Number(argValue(args, '--size') ?? (quick ? 128 : 512));
    const size = sizeMiB * 1024 * 1024;
    const dir = await mkdtemp(join(tmpdir(), 'hs-bench-link-'));
    const phases: string[] = [];
    /** Replica process CPU (user + system, µs) when each point's commit finished. */
    const replicaCpuAtFinish = new Map<number, number>();
    let wallStart = Date.now();
    const child = spawn(process.execPath, [...(process.env.HS_PROFILE_DIR ? ['--cpu-prof', `--cpu-prof-dir=${process.env.HS_PROFILE_DIR}`] : []), '--import', 'tsx', RUNNER, JSON.stringify({ dir: join(dir, 'rep'), size, id: 'bench-vol', secret: SECRET, noHash: true })], { stdio: ['ignore', 'pipe', 'inherit'] });
    try {
      const lines = createInterface({ input: child.stdout! });
      const url = await new Promise<string>((resolve, reject) => {
        child.once('exit', (code) => reject(new Error(`replica runner exited (${code})`)));
        lines.on('line', (l) => {
          const e = JSON.parse(l) as { event: string; url?: string; phase?: string; n?: number; t?: number; cpuUs?: number };
          if (e.event === 'listening' && e.url) resolve(e.url);
          if (e.event === 'phase' && e.t !== undefined) phases.push(`${e.phase} ${e.n} at +${e.t - wallStart} ms`);
          if (e.event === 'phase' && e.phase === 'finished' && e.cpuUs !== undefined) replicaCpuAtFinish.set(e.n ?? -1, e.cpuUs);
        });
      });
      const volume = await createVolume(join(dir, 'src'), { size, id: 'bench-vol' });
      const link = await startSource({ volume, sink: 'bench', url, secret: SECRET, policy: atSnapshotPolicy() });
      await link.waitAcked(volume.sink('bench').baseline, 60_000);
      log(`  writing ${sizeMiB} MiB of random data into the open snapshot`);
      const pool = randomBytes(8 * 1024 * 1024);
      for (let off = 0; off < size; off += 1 << 20) {
        const piece = Buffer.from(pool.subarray((off >> 20) % 7 * (1 << 20), ((off >> 20) % 7 + 1) * (1 << 20)));
        piece.writeUInt32LE(off >>> 0, 0); // every MiB differs
        for (let b = 0; b < piece.length; b += 4096) piece.writeUInt32LE((off + b) >>> 0, b + 4);
        await volume.write(off, piece);
      }
      await volume.flush();
      const before = link.stats();
      const baselineN = volume.sink('bench').baseline;
      const cpu0 = process.cpuUsage();
      const t0 = performance.now();
      wallStart = Date.now();
      phases.length = 0;
      const shipped = setInterval(() => {
        const st = link.stats();
        if (st.payloadBytesSent - before.payloadBytesSent >= size) {
          phases.push(`all payload sent at +${Date.now() - wallStart} ms`);
          clearInterval(shipped);
        }
      }, 5);
      const p = await volume.closeSnapshot();
      await link.waitAcked(p.n, 600_000);
      const seconds = (performance.now() - t0) / 1000;
      const cpu1 = process.cpuUsage(cpu0);
      clearInterval(shipped);
      // CPU per MiB: a steadier figure than wall time on a shared, loaded machine. The
      // replica's is measured between the commit of the baseline and that of the point (its
      // work while we wrote the data is only keepalives).
      await new Promise((r) => setTimeout(r, 50)); // the phase line may trail the ACK
      const sourceCpuMsPerMiB = (cpu1.user + cpu1.system) / 1000 / sizeMiB;
      const rc0 = replicaCpuAtFinish.get(baselineN);
      const rc1 = replicaCpuAtFinish.get(p.n);
      const replicaCpuMsPerMiB = rc0 !== undefined && rc1 !== undefined ? (rc1 - rc0) / 1000 / sizeMiB : null;
      log(`  CPU per MiB: source ${sourceCpuMsPerMiB.toFixed(2)} ms, replica ${replicaCpuMsPerMiB?.toFixed(2) ?? '?'} ms`);
      for (const line of phases) log(`    ${line}`);
      const after = link.stats();
      const wire = after.wireBytesOut - before.wireBytesOut;
      const payload = after.payloadBytesSent - before.payloadBytesSent;
      const replMBs = size / 1e6 / seconds;
      log(`  replication: ${sizeMiB} MiB committed in ${seconds.toFixed(2)} s (${replMBs.toFixed(0)} MB/s), wire ${wire} B for ${payload} B payload`);
      await link.stop();
      await volume.flush();
      const copySeconds = await fileCopySeconds(join(dir, 'src', 'image.raw'), join(dir, 'copy.raw'));
      const copyMBs = size / 1e6 / copySeconds;
      log(`  file copy (cp + fsync): ${copySeconds.toFixed(2)} s (${copyMBs.toFixed(0)} MB/s)`);
      await volume.shutdown();
      const ratio = replMBs / copyMBs;
      return {
        table: [
          ['measure', 'MB/s', 'seconds'],
          ['headstart loopback replication (end to end)', round(replMBs, 1), round(seconds, 2)],
          ['plain file copy (cp + fsync)', round(copyMBs, 1), round(copySeconds, 2)],
        ],
        json: {
          throughput_ratio: round(ratio, 3),
          wire_bytes_per_block_byte: round(wire / size, 4),
          replication_mb_s: round(replMBs, 1),
          source_cpu_ms_per_mib: round(sourceCpuMsPerMiB, 2),
          replica_cpu_ms_per_mib: replicaCpuMsPerMiB === null ? null : round(replicaCpuMsPerMiB, 2),
          file_copy_mb_s: round(copyMBs, 1),
          size_mib: sizeMiB,
          payload_bytes: payload,
          wire_bytes: wire,
        },
        notes: [`throughput ratio ${ratio.toFixed(2)} (target >= 0.5); wire bytes per block byte ${(wire / size).toFixed(4)} (target <= 1.05)`],
      };
    } finally {
      child.kill('SIGTERM');
      await new Promise((r) => setTimeout(r, 300));
      if (child.exitCode === null) child.kill('SIGKILL');
      await rm(dir, { recursive: true, force: true });
    }
  },
});
