/**
 * Prometheus metrics, computed from the node's status at scrape time (no second source of
 * truth). The recovery-point age is the signal operators alert on: it keeps growing when
 * replication silently stalls, whatever the link says.
 */
import { createServer, type Server } from 'node:http';
import { Gauge, Registry, collectDefaultMetrics } from 'prom-client';
import type { HeadstartNode } from './node';

export function metricsRegistry(node: HeadstartNode): Registry {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry, prefix: 'headstart_process_' });
  const gauge = (name: string, help: string, labelNames: string[], collect: (g: Gauge) => void) =>
    new Gauge({ name, help, labelNames, registers: [registry], collect() { this.reset(); collect(this); } });
  const volumes = () => node.status().volumes;
  gauge('headstart_volume_epoch', 'Volume generation number (promotion raises it).', ['volume', 'role'], (g) => volumes().forEach((v) => g.set({ volume: v.name, role: v.role }, v.epoch)));
  gauge('headstart_dirty_bytes', 'Bytes written to the open snapshot point so far.', ['volume'], (g) => volumes().forEach((v) => g.set({ volume: v.name }, v.dirtyBytes)));
  gauge('headstart_rpo_age_seconds', 'Age of the newest point the sink committed (now minus its scheduled time).', ['volume', 'sink'], (g) =>
    volumes().forEach((v) => v.sinks.forEach((s) => s.rpoAgeMs !== null && g.set({ volume: v.name, sink: s.name }, s.rpoAgeMs / 1000))),
  );
  gauge('headstart_replica_rpo_age_seconds', 'Replica side: age of the committed point.', ['volume'], (g) =>
    // On the primary's clock (its points' scheduled times are), whatever this node's says.
    volumes().forEach((v) => v.committed !== null && v.role === 'replica' && g.set({ volume: v.name }, (Date.now() - (v.primaryLink?.clockAheadMs ?? 0) - v.committed.scheduledAt) / 1000)),
  );
  gauge('headstart_rpo_target_seconds', "The volume's RPO target (rpoTarget), for alerts on either RPO age (absent without one).", ['volume'], (g) =>
    volumes().forEach((v) => v.rpoTargetMs !== null && g.set({ volume: v.name }, v.rpoTargetMs / 1000)),
  );
  gauge('headstart_commit_seconds', "Of the last committed point's completion lag, from its CLOSE to the sink's ACK: the replica's commit (journal, apply, syncs) and a round trip.", ['volume', 'sink'], (g) =>
    volumes().forEach((v) => v.sinks.forEach((s) => s.lastCommitMs !== null && g.set({ volume: v.name, sink: s.name }, s.lastCommitMs / 1000))),
  );
  gauge('headstart_completion_lag_seconds', 'Completion lag of the last committed point (commit time minus scheduled time).', ['volume', 'sink'], (g) =>
    volumes().forEach((v) => v.sinks.forEach((s) => s.lastLagMs !== null && g.set({ volume: v.name, sink: s.name }, s.lastLagMs / 1000))),
  );
  gauge('headstart_link_throughput_bytes', 'Link throughput measured from acknowledged bytes, bytes/s.', ['volume', 'sink'], (g) => volumes().forEach((v) => v.sinks.forEach((s) => g.set({ volume: v.name, sink: s.name }, s.throughput))));
  gauge('headstart_link_up', '1 while the link to the sink is connected.', ['volume', 'sink'], (g) => volumes().forEach((v) => v.sinks.forEach((s) => g.set({ volume: v.name, sink: s.name }, s.state === 'connected' ? 1 : 0))));
  gauge('headstart_not_converging', '1 while the points waiting for the sink grow with every close (writes outrun the link).', ['volume', 'sink'], (g) => volumes().forEach((v) => v.sinks.forEach((s) => g.set({ volume: v.name, sink: s.name }, s.notConverging ? 1 : 0))));
  gauge('headstart_verify_equal', 'Last scheduled verification: 1 if the replica equalled the source, 0 if it differed (absent until one completes).', ['volume'], (g) =>
    volumes().forEach((v) => typeof v.lastVerify?.equal === 'boolean' && g.set({ volume: v.name }, v.lastVerify.equal ? 1 : 0)),
  );
  gauge('headstart_verify_age_seconds', 'Seconds since the last scheduled verification started (whatever its outcome).', ['volume'], (g) =>
    volumes().forEach((v) => v.lastVerify !== null && g.set({ volume: v.name }, (Date.now() - v.lastVerify.at) / 1000)),
  );
  gauge('headstart_level_offset_seconds', "Load leveling (schedule.level): where in its interval the volume's points fall, seconds after the clock's marks.", ['volume'], (g) =>
    volumes().forEach((v) => v.levelOffsetMs != null && g.set({ volume: v.name }, v.levelOffsetMs / 1000)),
  );
  gauge('headstart_replica_between_points_seconds', 'While a replica\'s commit has stopped half-way (its image is between two points; reads of its export wait), seconds since that commit began; 0 otherwise (see status).', ['volume'], (g) =>
    volumes().forEach((v) => v.role === 'replica' && g.set({ volume: v.name }, v.betweenPoints?.stalled === true ? (Date.now() - v.betweenPoints.since) / 1000 : 0)),
  );
  gauge('headstart_close_failing', '1 while a scheduled snapshot close keeps failing (retried every 5 s; see status).', ['volume'], (g) => volumes().forEach((v) => g.set({ volume: v.name }, v.closeFailing === null ? 0 : 1)));
  gauge('headstart_group_wait_seconds', "Replica side: how long the volume's next commit has waited for the rest of its consistency group (0 when it does not wait).", ['volume', 'group'], (g) =>
    volumes().forEach((v) => v.group !== null && v.role === 'replica' && g.set({ volume: v.name, group: v.group }, v.groupWait === null ? 0 : (Date.now() - v.groupWait.since) / 1000)),
  );
  gauge('headstart_link_cap_bytes', 'A link cap in force, bytes/s (absent while off): scope "node" (linkCap, peer "") or "peer"; set_by config, window or operator.', ['scope', 'peer', 'set_by'], (g) =>
    node.linkCaps().forEach((c) => c.rateLimit !== null && g.set({ scope: c.peer === null ? 'node' : 'peer', peer: c.peer ?? '', set_by: c.setBy }, c.rateLimit)),
  );
  gauge('headstart_disk_free_bytes', "Free bytes on the volume's file system.", ['volume'], (g) => volumes().forEach((v) => v.disk.freeBytes !== null && g.set({ volume: v.name }, v.disk.freeBytes)));
  gauge('headstart_disk_reserve_bytes', 'Free bytes below which the volume refuses writes (kept for its own records).', ['volume'], (g) => volumes().forEach((v) => g.set({ volume: v.name }, v.disk.reserveBytes)));
  gauge('headstart_inflight_bytes', 'Payload bytes sent and not yet staged by the sink.', ['volume', 'sink'], (g) => volumes().forEach((v) => v.sinks.forEach((s) => g.set({ volume: v.name, sink: s.name }, s.inFlightBytes))));
  gauge('headstart_presend_bytes', 'Bytes of the open point pre-sent and still current.', ['volume'], (g) => volumes().forEach((v) => v.planner && g.set({ volume: v.name }, v.planner.presentBytes)));
  gauge('headstart_untracked_bytes', "Bytes of the open point over the planner's tracked blocks (policy.maxOpenBlocks): not pre-sent, they ship at the close.", ['volume'], (g) => volumes().forEach((v) => v.planner && g.set({ volume: v.name }, v.planner.untrackedBytes)));
  gauge('headstart_collided_bytes', 'Bytes of the open point pre-sent and then written again.', ['volume'], (g) => volumes().forEach((v) => v.planner && g.set({ volume: v.name }, v.planner.collidedBytes)));
  gauge('headstart_last_committed_point', 'Number of the newest point committed (replica) or acknowledged (per sink).', ['volume', 'sink'], (g) =>
    volumes().forEach((v) => {
      if (v.committed !== null) g.set({ volume: v.name, sink: '' }, v.committed.n);
      v.sinks.forEach((s) => s.acked !== null && g.set({ volume: v.name, sink: s.name }, s.acked));
    }),
  );
  return registry;
}

export async function startMetricsServer(node: HeadstartNode, host: string, port: number): Promise<{ server: Server; port: number }> {
  const registry = metricsRegistry(node);
  const server = createServer((req, res) => {
    if (req.url !== '/metrics') {
      res.writeHead(404).end('try /metrics\n');
      return;
    }
    registry.metrics().then(
      (text) => res.writeHead(200, { 'content-type': registry.contentType }).end(text),
      (err: Error) => res.writeHead(500).end(err.message),
    );
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, resolve);
  });
  const addr = server.address();
  return { server, port: typeof addr === 'object' && addr !== null ? addr.port : port };
}
