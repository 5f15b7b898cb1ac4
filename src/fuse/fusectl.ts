import { execFile } from 'node:child_process'
import { promises as fsp } from 'node:fs'
import { promisify } from 'node:util'

/**
 * Reads through the page cache are FUSE "background" requests, and the kernel lets only
 * max_background (12) of them be outstanding per mount: past that every further one waits.
 * In failover mode readers of a dead target hold theirs indefinitely, which would stall
 * reads of files that never touched it. libfuse 2 cannot set the limit, so it is raised
 * here through fusectl (root), mounting fusectl first where the system did not.
 */
const CONNECTIONS = '/sys/fs/fuse/connections'
export const MAX_BACKGROUND = 4096

async function connectionOf(mountpoint: string): Promise<string | null> {
  // mountinfo gives the device without a stat of the mount (which this very process serves).
  const info = await fsp.readFile('/proc/self/mountinfo', 'utf8')
  for (const line of info.split('\n')) {
    const f = line.split(' ')
    if (f[4] === mountpoint && f.includes('-')) return f[2]!.split(':')[1]!
  }
  return null
}

export async function raiseMaxBackground(mountpoint: string): Promise<void> {
  const minor = await connectionOf(mountpoint)
  if (!minor) throw new Error(`${mountpoint} is not in /proc/self/mountinfo`)
  const dir = `${CONNECTIONS}/${minor}`
  const present = await fsp.access(dir).then(() => true, () => false)
  if (!present) await promisify(execFile)('mount', ['-t', 'fusectl', 'fusectl', CONNECTIONS])
  await fsp.writeFile(`${dir}/max_background`, String(MAX_BACKGROUND))
  await fsp.writeFile(`${dir}/congestion_threshold`, String((MAX_BACKGROUND * 3) / 4))
}
