/**
 * Drives the real `headstart` CLI as separate processes: one-shot commands and long-running
 * `serve` nodes that a test can kill -9 and start again. Every process started here is
 * killed when the test file ends.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { afterAll } from 'vitest';

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

/** A TCP port free right now on 127.0.0.1 (for configurations that need fixed ports). */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const addr = s.address();
      const port = typeof addr === 'object' && addr !== null ? addr.port : 0;
      s.close(() => resolve(port));
    });
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
