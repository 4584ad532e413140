/** Runs benchmark suites: `tsx bench/run.ts [suite] [--quick] [--json] [suite flags...]`, `--help` lists them. See bench/lib.ts. */
import { readdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { isHeadstartError } from '@headstart/errors';
import { formatTable, type BenchSuite } from './lib';

const here = dirname(fileURLToPath(import.meta.url));
const argv = process.argv.slice(2);
const quick = argv.includes('--quick');
const json = argv.includes('--json');
const positional = argv.filter((a) => !a.startsWith('--'));
const available = readdirSync(here).filter((f) => f.endsWith('.bench.ts')).map((f) => f.slice(0, -'.bench.ts'.length)).sort();
if (positional[0] !== undefined && !available.includes(positional[0])) {
  process.stderr.write(`no benchmark suite ${JSON.stringify(positional[0])}; suites: ${available.join(', ')}\n`);
  process.exit(2);
}
const wanted = positional[0] !== undefined ? [positional[0]] : available;
const suiteArgs = wanted.length === 1 && positional[0] === wanted[0] ? argv.filter((a) => a !== wanted[0]) : argv;
const suites: BenchSuite[] = [];
for (const name of wanted) suites.push(((await import(pathToFileURL(join(here, `${name}.bench.ts`)).href)) as { default: BenchSuite }).default);

if (argv.includes('--help') || argv.includes('-h')) {
  const lines = ['usage: npm run bench[:SUITE] -- [--quick] [--json] [flags]   (or: tsx bench/run.ts [SUITE] ...)', '  --quick  each suite in under a minute', '  --json   one JSON object as the last line of stdout', ''];
  for (const s of suites) {
    lines.push(`${s.name}: ${s.description}`);
    for (const [flag, what] of Object.entries(s.flags ?? {})) lines.push(`  ${flag.padEnd(16)} ${what}`);
  }
  process.stdout.write(lines.join('\n') + '\n');
  process.exit(0);
}
const known = new Set(['--quick', '--json', ...suites.flatMap((s) => Object.keys(s.flags ?? {}))]);
const unknown = suiteArgs.filter((a) => a.startsWith('--') && !known.has(a.split('=')[0]));
if (unknown.length > 0) {
  process.stderr.write(`unknown flag${unknown.length > 1 ? 's' : ''} ${unknown.join(', ')} for ${wanted.join(', ')}; --help lists them\n`);
  process.exit(2);
}

const log = (line: string) => process.stderr.write(line + '\n');
const results: Record<string, Record<string, unknown>> = {};
let failed = false;
for (const suite of suites) {
  const name = suite.name;
  log(`# ${suite.name}: ${suite.description}${quick ? ' (quick)' : ''}`);
  try {
    const result = await suite.run({ quick, args: suiteArgs, log });
    results[name] = result.json;
    const text = [`## ${suite.name}`, formatTable(result.table), ...(result.notes ?? []).map((n) => `  ${n}`), ''].join('\n');
    (json ? process.stderr : process.stdout).write(text + '\n');
  } catch (err) {
    failed = true;
    // A HeadstartError is a diagnosis (a malformed trace, a missing file): its message, code and
    // hint are what the user needs. Anything else is a bug: its stack, to report it.
    log(`suite ${name} failed: ${isHeadstartError(err) ? err.describe() : ((err as Error).stack ?? String(err))}`);
    results[name] = { error: String((err as Error)?.message ?? err) };
  }
}
if (json) process.stdout.write('\n' + JSON.stringify(wanted.length === 1 ? results[wanted[0]] : results) + '\n');
process.exit(failed ? 1 : 0);
