/**
 * Numbers with units for people: sizes in binary units (KiB, MiB: block devices count in
 * powers of two), throughput in decimal MB/s (as links are rated), durations in ms / s /
 * min / h, and clock times in the viewer's own time zone.
 */

const IEC = ['B', 'KiB', 'MiB', 'GiB', 'TiB', 'PiB'];

export function formatBytes(n: number | null | undefined): string {
  if (n === null || n === undefined || !Number.isFinite(n)) return '—';
  let v = Math.abs(n);
  let u = 0;
  while (v >= 1024 && u < IEC.length - 1) {
    v /= 1024;
    u++;
  }
  const sign = n < 0 ? '-' : '';
  return u === 0 ? `${sign}${v} B` : `${sign}${v < 10 ? v.toFixed(2) : v < 100 ? v.toFixed(1) : v.toFixed(0)} ${IEC[u]}`;
}

export function formatRate(bytesPerSecond: number | null | undefined): string {
  if (bytesPerSecond === null || bytesPerSecond === undefined || !Number.isFinite(bytesPerSecond)) return '—';
  const mb = bytesPerSecond / 1e6;
  if (mb >= 100) return `${mb.toFixed(0)} MB/s`;
  if (mb >= 0.1) return `${mb.toFixed(mb >= 10 ? 1 : 2)} MB/s`;
  return `${(bytesPerSecond / 1e3).toFixed(1)} kB/s`;
}

export function formatDuration(ms: number | null | undefined): string {
  if (ms === null || ms === undefined || !Number.isFinite(ms)) return '—';
  const sign = ms < 0 ? '-' : '';
  const a = Math.abs(ms);
  if (a < 1000) return `${sign}${Math.round(a)} ms`;
  if (a < 60_000) return `${sign}${(a / 1000).toFixed(a < 10_000 ? 2 : 1)} s`;
  if (a < 3_600_000) {
    const m = Math.floor(a / 60_000);
    return `${sign}${m} min ${String(Math.floor((a % 60_000) / 1000)).padStart(2, '0')} s`;
  }
  const h = Math.floor(a / 3_600_000);
  return `${sign}${h} h ${String(Math.floor((a % 3_600_000) / 60_000)).padStart(2, '0')} min`;
}

// One formatter each: toLocaleTimeString builds a new Intl formatter per call, which costs
// about a millisecond in Chromium; 150 rows a second would spend most of the frame on it.
let clockFmt: Intl.DateTimeFormat | null = null;
let dateFmt: Intl.DateTimeFormat | null = null;

/** A configured target, as people write it: "5 s", "1 min", "1 h 30 min" (no false precision). */
export function formatTarget(ms: number | null | undefined): string {
  if (ms === null || ms === undefined || !Number.isFinite(ms)) return '—';
  if (ms % 3_600_000 === 0) return `${ms / 3_600_000} h`;
  if (ms >= 3_600_000) return `${Math.floor(ms / 3_600_000)} h ${Math.round((ms % 3_600_000) / 60_000)} min`;
  if (ms % 60_000 === 0) return `${ms / 60_000} min`;
  if (ms >= 60_000) return `${Math.floor(ms / 60_000)} min ${Math.round((ms % 60_000) / 1000)} s`;
  if (ms % 1000 === 0) return `${ms / 1000} s`;
  return formatDuration(ms);
}

/** A clock time in the viewer's zone (the browser's Intl settings), seconds included. */
export function formatClock(epochMs: number | null | undefined): string {
  if (epochMs === null || epochMs === undefined || !Number.isFinite(epochMs)) return '—';
  clockFmt ??= new Intl.DateTimeFormat(undefined, { hour: '2-digit', minute: '2-digit', second: '2-digit', hour12: false });
  return clockFmt.format(epochMs);
}

/** Date and time in the viewer's zone (tooltips). */
export function formatDateTime(epochMs: number | null | undefined): string {
  if (epochMs === null || epochMs === undefined || !Number.isFinite(epochMs)) return '—';
  dateFmt ??= new Intl.DateTimeFormat(undefined, { dateStyle: 'medium', timeStyle: 'medium', hour12: false });
  return dateFmt.format(epochMs);
}

export function viewerTimeZone(): string {
  return Intl.DateTimeFormat().resolvedOptions().timeZone ?? 'local time';
}
