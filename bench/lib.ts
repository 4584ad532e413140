/**
 * The benchmark harness. Every suite is a file `bench/<name>.bench.ts` whose default export
 * is a `BenchSuite`. `npm run bench` runs them all; `npm run bench:<name>` runs one.
 * Flags: `--quick` (each suite under 60 s), `--json` (one JSON object as the last line).
 * Suites measure headstart and its anchor (plain pwrite, nbdkit, file copy...) side by
 * side in one run and report ratios, because absolute numbers on a shared 2-core machine
 * mean little.
 */

import { HeadstartError } from '@headstart/errors';
import { TRACE_FORMATS, type TraceFormat, type TraceReadOptions } from '@headstart/traces';

export interface BenchOptions {
  readonly quick: boolean;
  /** Extra command-line arguments after the suite name (for example `--trace FILE`). */
  readonly args: readonly string[];
  /** Progress lines go here (stderr), never to stdout, so --json stays parseable. */
  log(line: string): void;
}

export interface BenchResult {
  /** A human table: header row then data rows. */
  readonly table: readonly (readonly (string | number)[])[];
  /** The machine-readable figures (the acceptance checks read these keys). */
  readonly json: Record<string, unknown>;
  /** Optional notes printed under the table. */
  readonly notes?: readonly string[];
}

export interface BenchSuite {
  readonly name: string;
  readonly description: string;
  /**
   * The suite's own flags (beyond --quick and --json), each with what it takes and does:
   * `--help` prints them, and a flag no suite knows is refused (a typo would otherwise run
   * the whole default sweep, for minutes, and report figures of something not asked for).
   */
  readonly flags?: Readonly<Record<string, string>>;
  run(options: BenchOptions): Promise<BenchResult>;
}

/** The value after `--name` in a suite's arguments, or undefined. */
export function argValue(args: readonly string[], name: string): string | undefined {
  const i = args.indexOf(name);
  return i >= 0 ? args[i + 1] : undefined;
}

/** The value after `--name`, or `fallback`. */
export function arg(args: readonly string[], name: string, fallback: string): string {
  return argValue(args, name) ?? fallback;
}

/** The flags of every suite that reads a trace file, as `flags` entries. */
export const TRACE_READ_FLAGS: Readonly<Record<string, string>> = {
  '--format': `NAME: read the trace as this format instead of detecting it (${TRACE_FORMATS.join(', ')})`,
  '--lenient': 'skip malformed records (counted and shown) instead of stopping at the first',
};

/** How a suite reads its trace files, from its arguments (--format, --lenient, --disk). */
export function traceReadOptions(args: readonly string[]): TraceReadOptions {
  const format = argValue(args, '--format');
  if (format !== undefined && !(TRACE_FORMATS as readonly string[]).includes(format)) {
    throw new HeadstartError('CONFIG_INVALID', `--format takes one of ${TRACE_FORMATS.join(', ')}, not ${JSON.stringify(format)}`);
  }
  const volume = argValue(args, '--disk');
  return { ...(format === undefined ? {} : { format: format as TraceFormat }), ...(args.includes('--lenient') ? { lenient: true } : {}), ...(volume === undefined ? {} : { volume }) };
}

/** What a lenient read skipped, for the suite's log. */
export function skippedNote(file: string, skipped: number, problems: readonly string[]): string {
  return `${file}: skipped ${skipped} malformed record(s) (--lenient): ${problems.join('; ')}${skipped > problems.length ? '; ...' : ''}`;
}

export function defineSuite(suite: BenchSuite): BenchSuite {
  return suite;
}

export function formatTable(rows: readonly (readonly (string | number)[])[]): string {
  const cells = rows.map((r) => r.map((c) => (typeof c === 'number' ? formatNumber(c) : c)));
  const widths: number[] = [];
  for (const r of cells) r.forEach((c, i) => (widths[i] = Math.max(widths[i] ?? 0, c.length)));
  const line = (r: string[]) => r.map((c, i) => (i === 0 ? c.padEnd(widths[i]) : c.padStart(widths[i]))).join('  ');
  const out = [line(cells[0] ?? [])];
  out.push(widths.map((w) => '-'.repeat(w)).join('  '));
  for (const r of cells.slice(1)) out.push(line(r));
  return out.join('\n');
}

export function formatNumber(n: number): string {
  if (!Number.isFinite(n)) return String(n);
  if (Number.isInteger(n)) return n.toLocaleString('en-US');
  const abs = Math.abs(n);
  return n.toFixed(abs >= 100 ? 0 : abs >= 10 ? 1 : abs >= 1 ? 2 : 3);
}

export function round(n: number, digits = 3): number {
  const f = 10 ** digits;
  return Math.round(n * f) / f;
}

/** Runs `fn` for about `seconds` (or `maxOps` operations), returning ops/s. */
export async function timeIt(fn: () => Promise<number>, label: string, log: (s: string) => void): Promise<{ seconds: number; units: number }> {
  const start = process.hrtime.bigint();
  const units = await fn();
  const seconds = Number(process.hrtime.bigint() - start) / 1e9;
  log(`  ${label}: ${units} units in ${seconds.toFixed(2)} s`);
  return { seconds, units };
}
