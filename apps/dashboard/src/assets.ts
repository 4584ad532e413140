/**
 * The page: src/page/main.ts (plain TypeScript, uPlot for the charts) bundled by esbuild
 * into one script and one style sheet, in memory, once per process (~100 ms), so the
 * node needs no build step and the page always matches the server it came from.
 */
import { readFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';

export interface PageAssets {
  readonly html: Buffer;
  readonly js: Buffer;
  readonly css: Buffer;
}

let cached: Promise<PageAssets> | null = null;

async function bundle(): Promise<PageAssets> {
  const entry = fileURLToPath(new URL('./page/main.ts', import.meta.url));
  const out = await build({
    entryPoints: [entry],
    bundle: true,
    format: 'esm',
    target: ['chrome100', 'firefox100', 'safari15'],
    minify: true,
    write: false,
    outdir: 'out',
    logLevel: 'silent',
    legalComments: 'none',
  });
  const js = out.outputFiles.find((f) => f.path.endsWith('.js'));
  const css = out.outputFiles.find((f) => f.path.endsWith('.css'));
  if (!js || !css) throw new Error('dashboard bundle lacks its script or style sheet');
  const html = await readFile(fileURLToPath(new URL('./page/index.html', import.meta.url)));
  return { html, js: Buffer.from(js.contents), css: Buffer.from(css.contents) };
}

export function pageAssets(): Promise<PageAssets> {
  if (!cached) {
    cached = bundle();
    cached.catch(() => (cached = null)); // a failed build is tried again on the next start
  }
  return cached;
}
