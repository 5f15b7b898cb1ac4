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
