/** Named defaults of the dashboard, each with its reason. */

/** How often the server asks the node for its status while a browser watches: at most
 * ~4 updates a second, so a cut link shows within a fraction of the 2 s an operator allows. */
export const STATUS_INTERVAL_MS = 250;
/** A browser whose socket holds more unsent bytes than this gets no new frame until it
 * drains; its status is coalesced to the newest (one per volume) and its events capped. */
export const CLIENT_HIGH_WATER_BYTES = 1024 * 1024;
/** Events queued for one slow browser; older ones are dropped and counted. */
export const CLIENT_MAX_QUEUED_EVENTS = 500;
/** Events the server remembers for a browser that connects later. */
export const HISTORY_EVENTS = 200;
/** Snapshot records remembered per volume x sink (the lag chart and the timeline). */
export const HISTORY_SNAPSHOTS_PER_SINK = 120;
/** Volume x sink pairs whose snapshot records are remembered (bounds memory if names churn). */
export const HISTORY_MAX_SINKS = 2000;
/** WebSocket ping to find browsers that went away without closing. */
export const CLIENT_PING_MS = 15_000;
/** Cookie that carries the token after the page was opened with ?token=. */
export const TOKEN_COOKIE = 'hs_dashboard';
/** A lag that rose at each of the newest LAG_TREND_POINTS committed points, by at least
 * LAG_TREND_MIN_SHARE of the RPO target in all, and now stands at LAG_TREND_NEAR_SHARE of
 * the target or more, counts as growing: the link is not keeping up and the target is near.
 * (Lags well inside the target wander up and down; flagging every short rise would cry wolf.) */
export const LAG_TREND_POINTS = 4;
export const LAG_TREND_MIN_SHARE = 0.1;
export const LAG_TREND_NEAR_SHARE = 0.5;

/** A replica whose commit has been writing its image this long is shown broken: it stopped half-way (reads of it wait). */
export const BETWEEN_POINTS_BROKEN_MS = 10_000;
