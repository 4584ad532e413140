/**
 * Writes docs/errors.md from the ERRORS table (`npm run docs:errors`), so the list of codes an
 * operator reads is the list the code raises. A test fails when the file is out of date.
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { ERRORS } from '@headstart/errors';

export function renderErrorsDoc(): string {
  const lines = [
    '# Error codes',
    '',
    'Every error headstart raises on purpose has a stable `code`: match on it, never on the',
    'message. The CLI prints `CODE: message (hint: ...)`; the admin API returns',
    '`{code, message, hint, retryable}`; NBD clients see the errno below; a replication peer',
    'sees the WebSocket close code. This file is generated from `packages/errors/src/index.ts`',
    '(`npm run docs:errors`).',
    '',
    '| code | what to do | retry helps | NBD errno | WS close |',
    '| --- | --- | --- | --- | --- |',
  ];
  for (const [code, spec] of Object.entries(ERRORS)) {
    lines.push(`| \`${code}\` | ${spec.hint.replace(/\|/g, '\\|')} | ${spec.retryable ? 'yes' : 'no'} | ${spec.nbdErrno} | ${spec.wsClose} |`);
  }
  return lines.join('\n') + '\n';
}

if (process.argv[1]?.endsWith('errors-doc.ts')) {
  writeFileSync(join(import.meta.dirname, '..', 'docs', 'errors.md'), renderErrorsDoc());
}
