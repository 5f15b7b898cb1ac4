import { LpError } from '../../src/protocol/errno.js'

/** The errno name a synchronous call fails with, or 'ok'; any other throw is the test's failure. */
export function errnoOf(fn: () => unknown): string {
  try {
    fn()
  } catch (e) {
    if (e instanceof LpError) return e.code
    throw e
  }
  return 'ok'
}
