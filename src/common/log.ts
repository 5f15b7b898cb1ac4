import { createRequire } from 'node:module'
import pino, { type Logger } from 'pino'
import type Pretty from 'pino-pretty'

export type { Logger }

/**
 * Daemons log pino JSON (with target, nid, xid, transno as fields) to a file; commands
 * that run in the foreground log to stderr: console lines for a person at a terminal
 * (Lustre's console messages), JSON for whatever reads a pipe.
 */
export function createLogger(opts: { name: string; file?: string; level?: string }): Logger {
  const level = opts.level ?? process.env.LPROXY_LOG_LEVEL ?? 'info'
  if (opts.file) {
    // Logs name clients (their UUIDs) and paths: root's to read.
    const dest = pino.destination({ dest: opts.file, mkdir: true, sync: false, mode: 0o600 })
    reopenOnHangup(dest)
    return pino({ name: opts.name, level }, dest)
  }
  if (process.stderr.isTTY) {
    // Only a person at a terminal needs it: not loaded by daemons and pipes.
    const pretty = createRequire(import.meta.url)('pino-pretty') as typeof Pretty
    return pino({ name: opts.name, level }, pretty({ destination: 2, sync: true, singleLine: true, translateTime: 'SYS:HH:MM:ss.l', ignore: 'pid,hostname' }))
  }
  return pino({ name: opts.name, level }, pino.destination({ dest: 2, sync: true }))
}

type FileDestination = ReturnType<typeof pino.destination>

/** Log files of this process, weakly: a logger dropped (a test's) need not be reopened. */
const files = new Set<WeakRef<FileDestination>>()
let hooked = false

/** logrotate's convention: after moving the files away it sends SIGHUP, and each daemon reopens its log by name. */
function reopenOnHangup(dest: FileDestination): void {
  if (!hooked) {
    hooked = true
    process.on('SIGHUP', () => {
      for (const ref of files) {
        const d = ref.deref()
        if (!d) files.delete(ref)
        else d.reopen()
      }
    })
  }
  files.add(new WeakRef(dest))
}

export const silentLogger: Logger = pino({ level: 'silent' })
