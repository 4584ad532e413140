/**
 * Link: unthrottled loopback replication, end to end (source volume -> committed on the
 * replica, which runs as a separate process), against a plain file copy of the same bytes
 * on the same disk (cp + fsync), in one run. Also bytes on the wire per byte of block data.
 * The shipped point is one snapshot whose dirty set is the whole volume of random data,
 * sent with the at-snapshot policy (nothing before the close), so the time covers reading
 * the point, hashing, framing, the WebSocket, verifying, staging in LMDB, and the commit
 * (apply + fsync). Args: --size MiB (default 512, quick 128). HS_PROFILE_DIR=dir writes a CPU
 * profile of the replica process there.
 *
 * Two reference floors are measured in the same run, because the anchor (one cp +
 * fsync) does less than any crash-safe replica can:
 *   - the bare transport: the same bytes over a plain WebSocket to a second process that only
 *     counts them (bench/helpers/ws-sink.ts), no reading, hashing or writing at either end;
 *   - the staged write: cp into a staging file, fsync, cp from it into the image, fsync. A
 *     replica that keeps its volume at n-1 until n is complete and commits it crash-safely
 *     must write every byte twice with a barrier between, whatever the language.
 */
import { spawn, execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtemp, open, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { atSnapshotPolicy, startSource } from '@headstart/replication';
import WebSocket from 'ws';
import { createVolume } from '@headstart/volume';
import { defineSuite, round, argValue } from './lib';

const WS_SINK = fileURLToPath(new URL('./helpers/ws-sink.ts', import.meta.url));
const RUNNER = fileURLToPath(new URL('../test/replication/replica-runner.ts', import.meta.url));
const SECRET = 'bench-link-secret';

/** cp + fdatasync of the destination. */
async function copySynced(src: string, dst: string): Promise<void> {
  await new Promise<void>((resolve, reject) => execFile('cp', ['--sparse=never', src, dst], (err) => (err ? reject(err) : resolve())));
  const fh = await open(dst, 'r+');
  await fh.datasync();
  await fh.close();
}

/** The staged-write floor: the bytes into a staging file, durably, then into the image, durably. */
async function stagedCopySeconds(src: string, stage: string, dst: string): Promise<number> {
  const t0 = performance.now();
  await copySynced(src, stage);
  await copySynced(stage, dst);
  return (performance.now() - t0) / 1000;
}

/** The transport floor: `size` bytes of `src` in 1 MiB messages over a bare WebSocket to a
 * process that only counts them (the source side's zero mask, as headstart uses on loopback). */
async function bareWebSocketSeconds(src: string, size: number): Promise<{ seconds: number; receiverCpuMsPerMiB: number }> {
  const sink = spawn(process.execPath, ['--import', 'tsx', WS_SINK, JSON.stringify({ expect: size })], { stdio: ['ignore', 'pipe', 'inherit'] });
  try {
    const lines = createInterface({ input: sink.stdout! });
    let onDone: (cpuUs: number) => void = () => undefined;
    const done = new Promise<number>((r) => (onDone = r));
    const url = await new Promise<string>((resolve, reject) => {
      sink.once('exit', (code) => reject(new Error(`ws sink exited (${code})`)));
      lines.on('line', (l) => {
        const e = JSON.parse(l) as { event: string; url?: string; cpuUs?: number };
        if (e.event === 'listening' && e.url) resolve(e.url);
        if (e.event === 'done') onDone(e.cpuUs ?? 0);
      });
    });
    // The bytes are read before the clock starts: this floor is the transport alone.
    const fh = await open(src, 'r');
    const pieces = await Promise.all(Array.from({ length: 8 }, async (_, i) => {
      const b = Buffer.alloc(1 << 20);
      await fh.read(b, 0, b.length, i << 20);
      return b;
    }));
    await fh.close();
    const ws = new WebSocket(url, { perMessageDeflate: false, generateMask: (mask: Buffer) => mask.fill(0) });
    await new Promise<void>((resolve, reject) => {
      ws.once('open', () => resolve());
      ws.once('error', reject);
    });
    const t0 = performance.now();
    let sent = 0;
    await new Promise<void>((resolve) => {
      const pump = () => {
        while (sent < size && ws.bufferedAmount < 16 << 20) {
          const piece = pieces[(sent >> 20) % pieces.length];
          ws.send(sent + piece.length <= size ? piece : piece.subarray(0, size - sent));
          sent += Math.min(piece.length, size - sent);
        }
        if (sent < size) setImmediate(pump);
        else resolve();
      };
      pump();
    });
    const cpuUs = await done;
    const seconds = (performance.now() - t0) / 1000;
    ws.close();
    return { seconds, receiverCpuMsPerMiB: cpuUs / 1000 / (size / (1 << 20)) };
  } finally {
    sink.kill('SIGTERM');
  }
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
  flags: { '--size': 'MiB: the point replicated (default 512, 128 with --quick)' },
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
      const stagedSeconds = await stagedCopySeconds(join(dir, 'src', 'image.raw'), join(dir, 'staged.raw'), join(dir, 'applied.raw'));
      const stagedMBs = size / 1e6 / stagedSeconds;
      log(`  staged-write floor (cp + fsync, twice): ${stagedSeconds.toFixed(2)} s (${stagedMBs.toFixed(0)} MB/s)`);
      const bare = await bareWebSocketSeconds(join(dir, 'src', 'image.raw'), size);
      const bareMBs = size / 1e6 / bare.seconds;
      log(`  bare WebSocket transport: ${bare.seconds.toFixed(2)} s (${bareMBs.toFixed(0)} MB/s), receiver CPU ${bare.receiverCpuMsPerMiB.toFixed(2)} ms per MiB`);
      await volume.shutdown();
      const ratio = replMBs / copyMBs;
      return {
        table: [
          ['measure', 'MB/s', 'seconds'],
          ['headstart loopback replication (end to end)', round(replMBs, 1), round(seconds, 2)],
          ['plain file copy (cp + fsync)', round(copyMBs, 1), round(copySeconds, 2)],
          ['floor: staged write (cp + fsync, twice)', round(stagedMBs, 1), round(stagedSeconds, 2)],
          ['floor: bare WebSocket, count only', round(bareMBs, 1), round(bare.seconds, 2)],
        ],
        json: {
          throughput_ratio: round(ratio, 3),
          wire_bytes_per_block_byte: round(wire / size, 4),
          replication_mb_s: round(replMBs, 1),
          source_cpu_ms_per_mib: round(sourceCpuMsPerMiB, 2),
          replica_cpu_ms_per_mib: replicaCpuMsPerMiB === null ? null : round(replicaCpuMsPerMiB, 2),
          file_copy_mb_s: round(copyMBs, 1),
          staged_floor_mb_s: round(stagedMBs, 1),
          bare_websocket_mb_s: round(bareMBs, 1),
          bare_websocket_receiver_cpu_ms_per_mib: round(bare.receiverCpuMsPerMiB, 2),
          ratio_vs_staged_floor: round(replMBs / stagedMBs, 3),
          ratio_vs_bare_websocket: round(replMBs / bareMBs, 3),
          size_mib: sizeMiB,
          payload_bytes: payload,
          wire_bytes: wire,
        },
        notes: [
          `throughput ratio ${ratio.toFixed(2)} (target >= 0.5); wire bytes per block byte ${(wire / size).toFixed(4)} (target <= 1.05)`,
          `floors: the staged write reaches ${(stagedMBs / copyMBs).toFixed(2)} of the file copy, the bare WebSocket ${(bareMBs / copyMBs).toFixed(2)}; headstart reaches ${(replMBs / stagedMBs).toFixed(2)} of the staged floor`,
        ],
      };
    } finally {
      child.kill('SIGTERM');
      await new Promise((r) => setTimeout(r, 300));
      if (child.exitCode === null) child.kill('SIGKILL');
      await rm(dir, { recursive: true, force: true });
    }
  },
});
