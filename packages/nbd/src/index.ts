/**
 * @headstart/nbd — exports BlockDevices (headstart volumes) to real NBD clients (qemu,
 * nbd-client, libnbd, fio). Fixed-newstyle handshake, simple and structured replies,
 * pipelined requests, runtime export registry. See server.ts and connection.ts.
 */
export { startNbdServer } from './server';
export { connectNbd, type ConnectNbdOptions, type NbdClient } from './client';
export { NbdParser, type NbdRequest, type ParserSink, type ParserLimits } from './parser';
export type { ExportOptions, ExportSummary, NbdLogger, NbdServer, NbdServerOptions, WriteRecorder } from './types';
export { DEFAULT_MAX_REQUEST } from './constants';
