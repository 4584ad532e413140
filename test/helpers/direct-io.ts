/**
 * Whether this process holds a file open with O_DIRECT: the flags of each of its fds in
 * /proc/self/fdinfo (Linux). The direct-I/O tests use it to see the direct path was taken.
 */
import { closeSync, constants as fsConstants, openSync, readdirSync, readFileSync, readlinkSync } from 'node:fs';

export function openDirect(path: string): boolean {
  return readdirSync('/proc/self/fd').some((fd) => {
    try {
      if (readlinkSync(`/proc/self/fd/${fd}`) !== path) return false;
      const flags = /flags:\s+([0-7]+)/.exec(readFileSync(`/proc/self/fdinfo/${fd}`, 'utf8'));
      return flags !== null && (parseInt(flags[1], 8) & fsConstants.O_DIRECT) !== 0;
    } catch {
      return false; // closed meanwhile
    }
  });
}

/** Whether the file system holding `path` (an existing file) takes O_DIRECT (a tmpfs does not). */
export function directSupported(path: string): boolean {
  try {
    closeSync(openSync(path, fsConstants.O_RDONLY | fsConstants.O_DIRECT));
    return true;
  } catch {
    return false;
  }
}
