import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs'
import path from 'node:path'
import pino from 'pino'
import type { Logger } from '../../src/common/log.js'

/** One pino line as a test sees it. */
export interface LogLine {
  level: number
  msg: string
  [k: string]: unknown
}

/**
 * A logger that keeps its lines in memory (synchronously), so a test can assert what a
 * component logged. `lines` fills as the code under test logs.
 */
export function captureLogger(level = 'debug'): { log: Logger; lines: LogLine[]; messages: () => string[] } {
  const lines: LogLine[] = []
  const log = pino({ level }, { write: (s: string) => void lines.push(JSON.parse(s) as LogLine) })
  return { log, lines, messages: () => lines.map((l) => l.msg) }
}

/**
 * What a process logs only when its own code failed (an exception no errno stands for), never
 * for anything a test provokes: the daemon's unmapped errors and failed FUSE replies, a
 * server's failed request handling. The application sees none of them as such (EIO, a retry
 * by the kernel), so the helpers check every log of a test file's processes at its end.
 */
const INTERNAL_ERRORS = new Set(['unexpected error in a filesystem operation', 'a FUSE reply failed', 'request handling failed'])

/** Throws if a log file (or any `*.log` in a directory) records an internal error. */
export function noInternalErrors(...where: string[]): void {
  const found: string[] = []
  for (const w of where) {
    if (!existsSync(w)) continue
    const files = statSync(w).isDirectory() ? readdirSync(w).filter((n) => n.endsWith('.log')).map((n) => path.join(w, n)) : [w]
    for (const f of files)
      for (const line of readFileSync(f, 'utf8').split('\n')) {
        if (!line.includes('"level":50')) continue
        let rec: { msg?: string; err?: unknown }
        try {
          rec = JSON.parse(line) as { msg?: string; err?: unknown }
        } catch {
          continue
        }
        if (rec.msg && INTERNAL_ERRORS.has(rec.msg)) found.push(`${path.basename(f)}: ${String(typeof rec.err === 'string' ? rec.err : JSON.stringify(rec.err)).split('\n')[0]}`)
      }
  }
  if (found.length) throw new Error(`${found.length} internal errors logged, the first: ${found.slice(0, 3).join(' | ')}`)
}

/** The last `n` lines of each log file that exists, headed by its name: for a failure's message, so a slow or stuck start can be read from CI's output. */
export function logTails(files: Iterable<string>, n = 15): string {
  const out: string[] = []
  for (const f of files) {
    if (!existsSync(f)) continue
    const lines = readFileSync(f, 'utf8').trimEnd().split('\n')
    out.push(`--- ${path.basename(f)}, its last ${Math.min(n, lines.length)} lines:`, ...lines.slice(-n))
  }
  return out.join('\n')
}
