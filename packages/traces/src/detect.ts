/**
 * Format detection from a file's first bytes: a binary head must decode as whole vscsi v1
 * records; a text head is tried against every line format, and the one under which all
 * sampled lines parse (with at least one record) wins (when reading leniently, the one that
 * reads most of them). Ambiguity is an error, not a guess.
 */
import { HeadstartError } from '@headstart/errors';
import { looksLikeVscsi } from './formats/vscsi';
import { HEADSTART_HEADER, LINE_PARSERS, SKIP } from './formats/text';
import type { TraceFormat } from './types';

/** How many bytes of the head detection wants. */
export const DETECT_BYTES = 64 * 1024;
const SAMPLE_LINES = 20;

function isBinary(head: Uint8Array): boolean {
  const n = Math.min(head.length, 4096);
  let odd = 0;
  for (let i = 0; i < n; i++) {
    const c = head[i];
    if (c === 0) return true;
    if (c < 9 || (c > 13 && c < 32)) odd++;
  }
  return odd > n / 100;
}

/**
 * `complete` says whether `head` is the whole file (then its last line is whole too).
 * `lenient`: a sample with malformed lines still picks the format that reads most of them
 * (more lines than it fails, and more than any other format reads), as the read then skips them.
 */
export function detectFormat(head: Uint8Array, complete = false, lenient = false): TraceFormat {
  if (head.length === 0) throw new HeadstartError('TRACE_FORMAT_UNKNOWN', 'the trace is empty');
  if (isBinary(head)) {
    if (looksLikeVscsi(head)) return 'vscsi';
    throw new HeadstartError('TRACE_FORMAT_UNKNOWN', 'binary content that is not a vscsi version-1 trace');
  }
  const text = Buffer.from(head.buffer, head.byteOffset, head.byteLength).toString('utf8');
  const lines = text.split('\n');
  if (!complete && lines.length > 1) lines.pop();
  const sample = lines
    .map((l, i) => ({ text: l.replace(/\r$/, ''), line: i + 1 }))
    .filter((l) => l.text.trim() !== '')
    .slice(0, SAMPLE_LINES);
  if (sample[0]?.text.startsWith(HEADSTART_HEADER.slice(0, '# headstart-trace'.length))) return 'headstart';
  const fits: TraceFormat[] = [];
  /** Of the formats that failed a sample line, the one that read the most: what the file most likely is. */
  let closest: { format: TraceFormat; records: number; errors: number; line: number; error: string; tied: boolean } | null = null;
  /** A format whose header the head has, with no record after it. */
  let headerOnly: TraceFormat | null = null;
  for (const [format, parser] of Object.entries(LINE_PARSERS) as [Exclude<TraceFormat, 'vscsi'>, (typeof LINE_PARSERS)['msr']][]) {
    const parse = parser();
    let records = 0;
    let errors = 0;
    let failed: { line: number; error: string } | null = null;
    for (const { text, line } of sample) {
      const r = parse(text);
      if (r === SKIP) continue;
      if ('error' in r) {
        errors++;
        failed ??= { line, error: r.error };
        continue;
      }
      records++;
    }
    if (failed === null && records > 0) fits.push(format);
    if (failed !== null && records > 0) {
      if (closest === null || records > closest.records) closest = { format, records, errors, ...failed, tied: false };
      else if (records === closest.records) closest.tied = true;
    }
    // blkparse skips every line that is not an event (its summary), so it "reads" any text.
    if (failed === null && records === 0 && format !== 'blkparse' && format !== 'headstart') headerOnly ??= format;
  }
  if (fits.length === 1) return fits[0];
  const first = JSON.stringify((sample[0]?.text ?? '').slice(0, 80));
  if (fits.length === 0) {
    if (lenient && closest !== null && !closest.tied && closest.records > closest.errors) return closest.format;
    if (closest !== null) throw new HeadstartError('TRACE_MALFORMED', `${closest.format} trace, line ${closest.line}: ${closest.error} (${closest.records} of the first ${closest.records + closest.errors} records read as ${closest.format}; no known format reads them all)`, { details: { format: closest.format, where: `line ${closest.line}` } });
    if (headerOnly !== null && complete) throw new HeadstartError('TRACE_MALFORMED', `${headerOnly} trace with a header and no records (first: ${first})`, { details: { format: headerOnly } });
    throw new HeadstartError('TRACE_FORMAT_UNKNOWN', `no known trace format matches the first lines (first: ${first})`);
  }
  throw new HeadstartError('TRACE_FORMAT_UNKNOWN', `the first lines fit several formats (${fits.join(', ')}); name one explicitly (first: ${first})`);
}
