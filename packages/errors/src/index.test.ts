import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ERRORS, HeadstartError, fromSystemError, isHeadstartError, type ErrorCode } from './index';
import { renderErrorsDoc } from '../../../scripts/errors-doc';

describe('error codes', () => {
  it.each(Object.keys(ERRORS) as ErrorCode[])('%s carries its hint, retryability and protocol codes', (code) => {
    const e = new HeadstartError(code, 'something happened');
    expect(e.code).toBe(code);
    expect(e.hint.length).toBeGreaterThan(10);
    expect(typeof e.retryable).toBe('boolean');
    expect(e.nbdErrno).toBeGreaterThan(0);
    expect(e.wsClose).toBeGreaterThanOrEqual(4000);
    expect(e.wsClose).toBeLessThan(5000);
    expect(e.describe()).toContain(code);
    expect(isHeadstartError(e, code)).toBe(true);
  });

  it('keeps ENOSPC distinguishable from other I/O errors', () => {
    const full = fromSystemError(Object.assign(new Error('no space'), { code: 'ENOSPC' }), 'writing');
    expect(full.code).toBe('VOLUME_NO_SPACE');
    expect(full.nbdErrno).toBe(28);
    expect(fromSystemError(Object.assign(new Error('eio'), { code: 'EIO' }), 'reading').code).toBe('VOLUME_IO');
  });

  it('says that a permission refused or a read-only mount is no failed disk, and what to do', () => {
    // Seen: a data directory owned by another user read "VOLUME_IO: locking DIR: EACCES:
    // permission denied, symlink ... (hint: The disk under the volume failed; check the system log.)".
    const denied = fromSystemError(Object.assign(new Error("EACCES: permission denied, symlink '1' -> '/d/lock'"), { code: 'EACCES' }), 'locking /d');
    expect(denied.describe()).toMatch(/may not write there; run headstart as the user that owns the data directory/);
    expect(denied.describe()).not.toContain('The disk under the volume failed;');
    expect(fromSystemError(Object.assign(new Error('EROFS: read-only file system'), { code: 'EROFS' }), 'writing').message).toContain('mounted read-only; remount it read-write');
  });

  it('docs/errors.md lists exactly the codes of the table (regenerate with npm run docs:errors)', () => {
    const doc = readFileSync(join(import.meta.dirname, '..', '..', '..', 'docs', 'errors.md'), 'utf8');
    expect(doc).toBe(renderErrorsDoc());
  });
});
