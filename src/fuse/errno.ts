import type { Logger } from '../common/log.js'
import { LpError, errnoOf, toStatus } from '../protocol/errno.js'

/** The negative errno a failed filesystem operation answers the kernel with. */
export function fuseStatus(e: unknown, log: Logger): number {
  // An invalidated import (evicted, deactivated, failed out) is EIO to the application.
  if (e instanceof LpError && e.code === 'ESHUTDOWN') return -errnoOf('EIO')
  if (!(e instanceof LpError)) log.error({ err: (e as Error)?.stack ?? String(e) }, 'unexpected error in a filesystem operation')
  return toStatus(e)
}
