/**
 * Structured logs (pino): JSON lines for machines by default; the CLI pretty-prints for a
 * terminal. Every component logs through the node's logger with its own bindings.
 */
import { pino, type Logger as PinoLogger } from 'pino';

export type Logger = PinoLogger;

export function createLogger(options: { level?: string; destination?: number | string; name?: string } = {}): Logger {
  return pino({ level: options.level ?? process.env.HEADSTART_LOG_LEVEL ?? 'info', name: options.name, base: undefined }, pino.destination({ dest: options.destination ?? 2, sync: false }));
}

/** A logger that drops everything (tests, --json runs that must keep stderr quiet). */
export function silentLogger(): Logger {
  return pino({ level: 'silent' });
}
