import { existsSync } from 'node:fs'
import path from 'node:path'
import { fuseMounts } from '../common/mounts.js'
import { clientSocket } from '../common/rundir.js'
import { LpError } from '../protocol/errno.js'

/**
 * Admin commands find their mount daemon by themselves: the lproxy mount holding a given
 * path, the one named with --mount, or the only one on the machine.
 */
export interface FoundMount {
  mountpoint: string
  socket: string
  /** The path within the mount ('/' for the root), when one was given. */
  rel: string
}

async function lproxyMounts(): Promise<string[]> {
  return (await fuseMounts()).filter((m) => m.type === 'fuse.lproxy').map((m) => m.mountpoint)
}

export async function mountOf(p: string): Promise<FoundMount> {
  const abs = path.resolve(p)
  const candidates = (await lproxyMounts()).filter((mp) => abs === mp || abs.startsWith(mp.endsWith('/') ? mp : mp + '/'))
  const mp = candidates.sort((a, b) => b.length - a.length)[0]
  if (!mp) throw new LpError('EINVAL', `${abs} is not on an lproxy mount`)
  const rel = '/' + path.relative(mp, abs)
  return { mountpoint: mp, socket: clientSocket(mp), rel: rel === '/' ? '/' : rel }
}

/** The mount to talk to: --mount, else the one the working directory is in, else the only one. */
export async function chooseMount(explicit?: string): Promise<FoundMount> {
  if (explicit) {
    const mp = path.resolve(explicit)
    if (!(await lproxyMounts()).includes(mp)) throw new LpError('EINVAL', `${mp} is not an lproxy mount`)
    return { mountpoint: mp, socket: clientSocket(mp), rel: '/' }
  }
  const inCwd = await mountOf(process.cwd()).catch(() => null)
  if (inCwd) return { ...inCwd, rel: '/' }
  // Mounts whose daemon has no socket in this run directory belong to another (a test's) world.
  const all = (await lproxyMounts()).filter((mp) => existsSync(clientSocket(mp)))
  if (all.length === 1) return { mountpoint: all[0]!, socket: clientSocket(all[0]!), rel: '/' }
  if (!all.length) throw new LpError('ENODEV', 'no lproxy mount on this machine')
  throw new LpError('EINVAL', `several lproxy mounts (${all.join(', ')}): say which with --mount`)
}
