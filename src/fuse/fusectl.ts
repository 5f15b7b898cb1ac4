import { execFile } from 'node:child_process'
import { promises as fsp } from 'node:fs'
import { promisify } from 'node:util'
import type { Logger } from '../common/log.js'

/**
 * Per-connection tuning through sysfs (root).
 *
 * Reads through the page cache are FUSE "background" requests, and the kernel lets only
 * max_background (12) of them be outstanding per mount: past that every further one waits.
 * In failover mode readers of a dead target hold theirs indefinitely, which would stall
 * reads of files that never touched it. libfuse 2 cannot set the limit, so it is raised
 * here through fusectl, mounting fusectl first where the system did not.
 *
 * The kernel's read-ahead window of a FUSE mount starts at 128 KiB and INIT can only lower
 * it; a binding with larger read requests raises it through the mount's bdi.
 *
 * A connection's fusectl directory lasts as long as the connection: its end tells a binding
 * that is not told otherwise (libfuse 2) that the mount is gone.
 */
const CONNECTIONS = '/sys/fs/fuse/connections'
export const MAX_BACKGROUND = 4096

/** The mount's device (major:minor), from mountinfo: no stat of a mount this very process serves. */
async function deviceOf(mountpoint: string): Promise<string> {
  const info = await fsp.readFile('/proc/self/mountinfo', 'utf8')
  for (const line of info.split('\n')) {
    const f = line.split(' ')
    if (f[4] === mountpoint && f.includes('-')) return f[2]!
  }
  throw new Error(`${mountpoint} is not in /proc/self/mountinfo`)
}

/** A connection's fusectl directory is named by the minor of the mount's device. */
const connectionDir = (device: string) => `${CONNECTIONS}/${device.split(':')[1]}`

async function raiseMaxBackground(device: string): Promise<void> {
  const dir = connectionDir(device)
  const present = await fsp.access(dir).then(() => true, () => false)
  if (!present) await promisify(execFile)('mount', ['-t', 'fusectl', 'fusectl', CONNECTIONS])
  await fsp.writeFile(`${dir}/max_background`, String(MAX_BACKGROUND))
  await fsp.writeFile(`${dir}/congestion_threshold`, String((MAX_BACKGROUND * 3) / 4))
}

/**
 * Raise max_background (and the read-ahead window, when given); failures are warnings.
 * Returns the mount's device (major:minor), if it was found.
 */
export async function tuneConnection(mountpoint: string, log: Logger, readAheadKib?: number): Promise<string | undefined> {
  const device = await deviceOf(mountpoint).catch((e: Error) => void log.warn({ err: e.message }, `cannot tune the FUSE connection of ${mountpoint}`))
  if (!device) return undefined
  await raiseMaxBackground(device).catch((e) =>
    log.warn({ err: (e as Error).message }, `could not raise the FUSE max_background of ${mountpoint}: reads blocked on a dead target may stall other reads`),
  )
  if (readAheadKib !== undefined) {
    await fsp
      .writeFile(`/sys/class/bdi/${device}/read_ahead_kb`, String(readAheadKib))
      .catch((e) => log.warn({ err: (e as Error).message }, `could not raise the read-ahead of ${mountpoint}: sequential reads will be slower`))
  }
  return device
}

/** How often the end of a connection is looked for. */
const WATCH_MS = 1000

/**
 * Calls `gone` once the FUSE connection of the mount on `device` has ended (unmounted from
 * outside, or aborted; a lazy unmount ends it when its last open file closes). Returns what
 * stops the watch. Without fusectl nothing can be watched: a warning says so.
 */
export async function watchConnection(mountpoint: string, device: string | undefined, log: Logger, gone: () => void): Promise<() => void> {
  const dir = device && connectionDir(device)
  if (!dir || !(await fsp.access(dir).then(() => true, () => false))) {
    log.warn({ mountpoint }, 'the FUSE connection cannot be watched (no fusectl): an unmount from outside leaves this daemon running; use lproxy umount')
    return () => undefined
  }
  let watching = true
  const timer = setInterval(() => {
    void fsp.access(dir).catch(() => {
      if (!watching) return
      watching = false
      clearInterval(timer)
      gone()
    })
  }, WATCH_MS)
  timer.unref()
  return () => {
    watching = false
    clearInterval(timer)
  }
}
