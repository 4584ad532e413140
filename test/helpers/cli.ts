/**
 * Drives the real `headstart` CLI as separate processes: one-shot commands and long-running
 * `serve` nodes that a test can kill -9 and start again. Every process started here is
 * killed when the test file ends.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { afterAll } from 'vitest';
import type { NodeStatus } from '@headstart/node';

const root = join(import.meta.dirname, '..', '..');
export const CLI = join(root, 'apps', 'cli', 'bin', 'headstart.js');

const running = new Set<ChildProcess>();
afterAll(() => {
  for (const p of running) p.kill('SIGKILL');
});

export interface CliResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

export function runCli(args: string[], options: { cwd?: string; timeoutMs?: number } = {}): Promise<CliResult> {
  return new Promise((resolve, reject) => {
    const p = spawn(process.execPath, [CLI, ...args], { cwd: options.cwd ?? root, stdio: ['ignore', 'pipe', 'pipe'] });
    running.add(p);
    let stdout = '';
    let stderr = '';
    p.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    p.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const timer = setTimeout(() => {
      p.kill('SIGKILL');
      reject(new Error(`headstart ${args.join(' ')} timed out\n${stderr}`));
    }, options.timeoutMs ?? 60_000);
    // 'close', not 'exit': 'exit' can come before stdout has been read to its end.
    p.on('close', (code) => {
      clearTimeout(timer);
      running.delete(p);
      resolve({ code, stdout, stderr });
    });
  });
}

/** `headstart serve` in the background; its log goes to the returned buffer. */
export function startServe(config: string): { process: ChildProcess; log: () => string } {
  const p = spawn(process.execPath, [CLI, 'serve', '--config', config], { cwd: root, stdio: ['ignore', 'pipe', 'pipe'] });
  running.add(p);
  let log = '';
  p.stdout!.on('data', (d: Buffer) => (log += d.toString()));
  p.stderr!.on('data', (d: Buffer) => (log += d.toString()));
  p.on('exit', () => running.delete(p));
  return { process: p, log: () => log };
}

export type Serve = ReturnType<typeof startServe>;

/**
 * Waits until the node started by `serve` answers `headstart status`; its status. Fails at
 * once if the node exits, and on a timeout, with the end of its log: "timed out waiting"
 * alone says nothing about why a node did not come up.
 */
export async function waitServing(serve: Serve, config: string, timeoutMs = 60_000): Promise<NodeStatus> {
  const until = Date.now() + timeoutMs;
  for (;;) {
    const p = serve.process;
    if (p.exitCode !== null || p.signalCode !== null) {
      throw new Error(`headstart serve -c ${config} exited (${p.exitCode ?? p.signalCode}) before it served:\n${serve.log().slice(-3000)}`);
    }
    const r = await runCli(['status', '--json', '-c', config]);
    if (r.code === 0) return JSON.parse(r.stdout) as NodeStatus;
    if (Date.now() > until) {
      throw new Error(`headstart serve -c ${config} did not answer status within ${timeoutMs / 1000} s (last: ${r.stderr.trim().slice(0, 300)}); its log:\n${serve.log().slice(-3000)}`);
    }
    await new Promise((resolve) => setTimeout(resolve, 250));
  }
}

export function killHard(p: ChildProcess): Promise<void> {
  return new Promise((resolve) => {
    if (p.exitCode !== null || p.signalCode !== null) return resolve();
    p.once('exit', () => resolve());
    p.kill('SIGKILL');
  });
}

export function stopGracefully(p: ChildProcess, timeoutMs = 20_000): Promise<number | null> {
  return new Promise((resolve) => {
    if (p.exitCode !== null || p.signalCode !== null) return resolve(p.exitCode);
    const t = setTimeout(() => p.kill('SIGKILL'), timeoutMs);
    p.once('exit', (code) => {
      clearTimeout(t);
      resolve(code);
    });
    p.kill('SIGTERM');
  });
}

/**
 * A TCP port free right now on 127.0.0.1 (for configurations that need fixed ports).
 *
 * Chosen at random below the kernel's ephemeral range, not by listening on port 0: a port
 * from that range is handed out again as the local port of any outgoing connection, and
 * with many tests connecting over loopback, a node started a few seconds later could find
 * its port taken (EADDRINUSE) — the likeliest cause of a CI run that once timed out
 * waiting for a node to answer, with nothing in its output to say why.
 */
export async function freePort(): Promise<number> {
  const ephemeralLow = ephemeralRangeStart();
  for (let attempt = 0; attempt < 50; attempt++) {
    const port = 10_000 + Math.floor(Math.random() * (ephemeralLow - 10_000));
    if (handedOut.has(port) || !(await canListen(port))) continue;
    handedOut.add(port);
    return port;
  }
  throw new Error(`no free TCP port found between 10000 and ${ephemeralLow}`);
}

/** Ports this process handed out: free until their node starts, so never hand one out twice. */
const handedOut = new Set<number>();

function ephemeralRangeStart(): number {
  try {
    const low = Number(readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8').trim().split(/\s+/)[0]);
    if (Number.isInteger(low) && low > 11_000) return low;
  } catch {
    // not Linux: IANA's ephemeral range starts at 49152
  }
  return 49_152;
}

function canListen(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = createServer();
    s.once('error', () => resolve(false));
    s.listen(port, '127.0.0.1', () => s.close(() => resolve(true)));
  });
}

export async function waitFor<T>(what: string, probe: () => Promise<T | undefined | null | false>, timeoutMs = 60_000, everyMs = 250): Promise<T> {
  const until = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const v = await probe();
      if (v !== undefined && v !== null && v !== false) return v;
    } catch (err) {
      last = err;
    }
    if (Date.now() > until) throw new Error(`timed out waiting for ${what}${last ? `: ${String(last)}` : ''}`);
    await new Promise((r) => setTimeout(r, everyMs));
  }
}
