/**
 * Bundles a TypeScript entry point into one .mjs so a test can start it as a child process
 * in ~100 ms (tsx would compile it again at every start). Native packages stay external and
 * load from the repository's node_modules, so the bundle is written inside the repository.
 */
import { build } from 'esbuild';
import { mkdirSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const outDir = join(root, 'node_modules', '.cache', 'headstart-test');

const NATIVE = ['lmdb', 'msgpackr', 'ws', 'bufferutil', 'utf-8-validate', 'xxhash-wasm', 'pino', '@aws-sdk/*', 'playwright-core'];

export async function bundle(entry: string): Promise<string> {
  mkdirSync(outDir, { recursive: true });
  const out = join(outDir, `${basename(entry).replace(/\.ts$/, '')}-${process.pid}.mjs`);
  await build({ entryPoints: [entry], outfile: out, bundle: true, platform: 'node', format: 'esm', target: 'node20', external: NATIVE, logLevel: 'error' });
  return out;
}
