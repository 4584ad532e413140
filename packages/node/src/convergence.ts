/**
 * "Not converging": a sink falls further behind with every snapshot point, because writes
 * outrun the link (or its rate cap). The operator must raise the cap, slow the writers or
 * lengthen the interval; waiting does not help. Today's tools stay silent about this
 * (DESIGN.md, operators' needs 9), so it is a plain flag in status, metrics, the log and the
 * dashboard.
 *
 * The rule, from the node's own record of closes and acknowledgements: at each close, count
 * the closed points the sink had not acknowledged yet (its backlog; an acknowledgement of n
 * covers every point up to n). Over the last CONVERGE_WINDOW closes, the backlog is not
 * converging when it grew in the first half AND again in the second half, and is now the
 * highest it has been in the window. So a link 1.5x too slow (the backlog grows by one point
 * every three closes, with jitter) is flagged within a window; a single write burst (one
 * jump, then the backlog shrinks or stays) is not, nor is a backlog that is large but steady;
 * and the flag clears as soon as the backlog stops growing.
 */

/** Closes in the window (7: at 1.5x overload the backlog rises twice in it). */
export const CONVERGE_WINDOW = 7;
/** Closes looked back over for acknowledgements (bounds the work per status call). */
const LOOKBACK = 64;

export interface CloseRecord {
  readonly n: number;
  readonly closedAt: number;
  readonly acks: Readonly<Record<string, { readonly ackedAt: number } | undefined>>;
}

/** The backlog of `sink` at each of the last `count` closes of `history` (oldest first). */
export function backlogAtCloses(history: readonly CloseRecord[], sink: string, count: number): number[] {
  const recs = history.slice(-LOOKBACK);
  const out: number[] = [];
  for (let i = Math.max(0, recs.length - count); i < recs.length; i++) out.push(backlogAt(recs.slice(0, i + 1), sink, recs[i].closedAt));
  return out;
}

/** The points of `closed` that `sink` had not acknowledged by time t. */
function backlogAt(closed: readonly CloseRecord[], sink: string, t: number): number {
  // The newest point acknowledged by then (of any closed so far); every point up to it is done.
  let done = -Infinity;
  for (const r of closed) {
    const a = r.acks[sink];
    if (a !== undefined && a.ackedAt <= t && r.n > done) done = r.n;
  }
  return closed.filter((r) => r.n > done).length;
}

/**
 * Whether the sink's backlog keeps growing over the last CONVERGE_WINDOW closes (see above),
 * as of `now` (default: the last close). A sink that has acknowledged every point closed by
 * then (a link back after an outage, its backlog shipped since the last close) has no
 * backlog: it is not flagged while the next close, maybe an hour away, is awaited to say so.
 */
export function notConverging(history: readonly CloseRecord[], sink: string, now?: number): boolean {
  const b = backlogAtCloses(history, sink, CONVERGE_WINDOW);
  if (b.length < CONVERGE_WINDOW) return false;
  const first = b[0];
  const mid = b[Math.floor(b.length / 2)];
  const last = b[b.length - 1];
  if (now !== undefined && backlogAt(history.slice(-LOOKBACK), sink, now) === 0) return false;
  return mid > first && last > mid && last >= Math.max(...b);
}
