import pino, { type Logger } from 'pino'

export type { Logger }

/**
 * Daemons log pino JSON (with target, nid, xid, transno as fields) to a file; commands
 * that run in the foreground log to stderr.
 */
export function createLogger(opts: { name: string; file?: string; level?: string }): Logger {
  const level = opts.level ?? process.env.LPROXY_LOG_LEVEL ?? 'info'
  if (opts.file) {
    return pino({ name: opts.name, level }, pino.destination({ dest: opts.file, mkdir: true, sync: false }))
  }
  return pino({ name: opts.name, level }, pino.destination({ dest: 2, sync: true }))
}

export const silentLogger: Logger = pino({ level: 'silent' })
