/**
 * Format detection from a file's first bytes: a binary head must decode as whole vscsi v1
 * records; a text head is tried against every line format, and the one under which all
 * sampled lines parse (with at least one record) wins. Ambiguity is an error, not a guess.
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

/** `complete` says whether `head` is the whole file (then its last line is whole too). */
export function detectFormat(head: Uint8Array, complete = false): TraceFormat {
  if (head.length === 0) throw new HeadstartError('TRACE_FORMAT_UNKNOWN', 'the trace is empty');
  if (isBinary(head)) {
    if (looksLikeVscsi(head)) return 'vscsi';
    throw new HeadstartError('TRACE_FORMAT_UNKNOWN', 'binary content that is not a vscsi version-1 trace');
  }
  const text = Buffer.from(head.buffer, head.byteOffset, head.byteLength).toString('utf8');
  const lines = text.split('\n');
  if (!complete && lines.length > 1) lines.pop();
  const sample = lines.map((l) => l.replace(/\r$/, '')).filter((l) => l.trim() !== '').slice(0, SAMPLE_LINES);
  if (sample[0]?.startsWith(HEADSTART_HEADER.slice(0, '# headstart-trace'.length))) return 'headstart';
  const fits: TraceFormat[] = [];
  for (const [format, parser] of Object.entries(LINE_PARSERS) as [Exclude<TraceFormat, 'vscsi'>, (typeof LINE_PARSERS)['msr']][]) {
    const parse = parser();
    let records = 0;
    let ok = true;
    for (const line of sample) {
      const r = parse(line);
      if (r === SKIP) continue;
      if ('error' in r) {
        ok = false;
        break;
      }
      records++;
    }
    if (ok && records > 0) fits.push(format);
  }
  if (fits.length === 1) return fits[0];
  const first = JSON.stringify((sample[0] ?? '').slice(0, 80));
  if (fits.length === 0) throw new HeadstartError('TRACE_FORMAT_UNKNOWN', `no known trace format matches the first lines (first: ${first})`);
  throw new HeadstartError('TRACE_FORMAT_UNKNOWN', `the first lines fit several formats (${fits.join(', ')}); name one explicitly (first: ${first})`);
}
