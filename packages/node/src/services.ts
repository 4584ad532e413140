/**
 * The services a running node offers beside replication: the admin API (for the CLI),
 * Prometheus metrics and the dashboard. `headstart serve` and the demo start them the same
 * way.
 */
import type { Server } from 'node:http';
import type { NodeConfig } from './config';
import type { HeadstartNode } from './node';
import type { Logger } from './logger';
import { startAdminServer } from './admin';
import { startMetricsServer } from './metrics';
import { startNodeDashboard } from './dashboard';
import { listening } from './listen';

export interface Services {
  readonly adminPort: number | null;
  readonly metricsUrl: string | null;
  readonly dashboardUrl: string | null;
  stop(): Promise<void>;
}

export async function startServices(node: HeadstartNode, config: NodeConfig, log: Logger, options: { admin?: boolean } = {}): Promise<Services> {
  const servers: Server[] = [];
  const stops: (() => Promise<void>)[] = [];
  let adminPort: number | null = null;
  let metricsUrl: string | null = null;
  let dashboardUrl: string | null = null;
  try {
    if (options.admin !== false) {
      const admin = await listening('listen.admin', config.listen.admin.host, config.listen.admin.port, () => startAdminServer(node, config));
      servers.push(admin.server);
      adminPort = admin.port;
    }
    if (config.listen.metrics) {
      const { host, port } = config.listen.metrics;
      const m = await listening('listen.metrics', host, port, () => startMetricsServer(node, host, port));
      servers.push(m.server);
      metricsUrl = `http://${config.listen.metrics.host}:${m.port}/metrics`;
    }
    if (config.listen.dashboard) {
      const { host, port } = config.listen.dashboard;
      const d = await listening('listen.dashboard', host, port, () => startNodeDashboard(node, config, log));
      dashboardUrl = d.url;
      stops.push(d.stop);
    }
  } catch (err) {
    for (const s of servers) s.close();
    for (const s of stops) await s().catch(() => {});
    throw err;
  }
  return {
    adminPort,
    metricsUrl,
    dashboardUrl,
    async stop() {
      for (const s of stops) await s().catch(() => {});
      await Promise.all(servers.map((s) => new Promise<void>((resolve) => { s.close(() => resolve()); s.closeAllConnections?.(); })));
    },
  };
}
