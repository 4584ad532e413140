/**
 * @headstart/dashboard: the replica health dashboard. `startDashboard` serves the page and
 * its live WebSocket feed over a `FeedSource` the node implements; the feed's message
 * shapes live in @headstart/protocol (feed.ts). The health rule and the unit formatting
 * are exported too, so the node's metrics and the CLI say the same as the page.
 */
export { startDashboard, type Dashboard, type DashboardOptions } from './server';
export type { FeedSource, DashboardLogger } from './source';
export { sinkHealth, lagGrowing, worst, type Health, type HealthVerdict, type HealthInput } from './health';
export { formatBytes, formatRate, formatDuration, formatClock, formatTarget } from './format';
export { isLoopbackAddress } from './auth';
