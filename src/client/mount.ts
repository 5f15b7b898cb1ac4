import { spawn } from 'node:child_process'
import { createHash } from 'node:crypto'
import { promises as fsp } from 'node:fs'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { promisify } from 'node:util'
import { execFile } from 'node:child_process'
import { callJsonSocket, SocketUnavailable } from '../common/jsonsock.js'
import { loadSigningKey } from '../common/keyfile.js'
import { isMounted } from '../common/mounts.js'
import { clientSocket } from '../common/rundir.js'
import { LpError, type ErrnoName } from '../protocol/errno.js'
import { DEFAULT_PORT, nidList } from '../protocol/nid.js'
import type { DaemonReport } from './daemon.js'
import { parseOptions } from './options.js'
import { DATA_PROCESS_FLAGS } from '../common/v8flags.js'
import { inNetns } from '../common/netns.js'

/**
 * Mounting and unmounting a filesystem: `lproxy mount` starts one client daemon per
 * mountpoint and returns once the mount answers.
 */
export interface MountOptions {
  /** MGS NID spec, e.g. `127.0.1.1@tcp:127.0.1.2@tcp`. */
  mgsnode: string
  /** The filesystem the MGS must serve (`mgsnode:/fsname` names it); any when absent. */
  fsname?: string
  mountpoint: string
  /** `-o` options: timeout=N, noir, ... */
  options: string[]
  /** pino JSON log file of the daemon. */
  log?: string
  port?: number
  /** Network namespace the daemon runs in; the mount itself stays in this mount namespace. */
  netns?: string
}

export interface MountInfo {
  pid: number
  mountpoint: string
  socket: string
  warnings: string[]
}

const DAEMON = path.join(path.dirname(fileURLToPath(import.meta.url)), 'daemon.js')

export async function mountFs(o: MountOptions): Promise<MountInfo> {
  nidList(o.mgsnode)
  const opts = parseOptions(o.options)
  // A key file that is missing or readable by others is refused here, before any daemon starts.
  if (opts.keyfile) await loadSigningKey(opts.keyfile, 'fs').catch((e: Error) => {
    throw new LpError('EACCES', e.message)
  })
  const mountpoint = path.resolve(o.mountpoint)
  const st = await fsp.stat(mountpoint).catch(() => null)
  if (!st) throw new LpError('ENOENT', `mount point ${mountpoint} does not exist`)
  if (!st.isDirectory()) throw new LpError('ENOTDIR', `mount point ${mountpoint} is not a directory`)
  if (await isMounted(mountpoint)) throw new LpError('EBUSY', `${mountpoint} is already mounted`)
  const log = o.log ?? `/var/log/lproxy/client-${createHash('sha256').update(mountpoint).digest('hex').slice(0, 8)}.log`
  await fsp.mkdir(path.dirname(log), { recursive: true })
  const [cmd, args] = inNetns(o.netns, process.execPath, [
    ...DATA_PROCESS_FLAGS, DAEMON, '--mgsnode', o.mgsnode, ...(o.fsname ? ['--fsname', o.fsname] : []), '--mountpoint', mountpoint, '--options', JSON.stringify(o.options), '--log', log, '--port', String(o.port ?? DEFAULT_PORT),
  ])
  const child = spawn(cmd, args, { detached: true, stdio: ['ignore', 'ignore', 'ignore', 'ipc'] })
  const r = await new Promise<DaemonReport>((resolve) => {
    child.once('message', (m) => resolve(m as DaemonReport))
    child.once('exit', (code) => resolve({ ok: false, error: `mount daemon exited (code ${code}) before mounting; see ${log}` }))
  })
  if (child.connected) child.disconnect()
  child.unref()
  if (!r.ok) throw new LpError((r.errno as ErrnoName) ?? 'EIO', `mount of ${mountpoint} failed: ${r.error}`)
  return { pid: r.pid!, mountpoint, socket: clientSocket(mountpoint), warnings: r.warnings ?? [] }
}

export async function umountFs(mountpoint: string): Promise<void> {
  const mp = path.resolve(mountpoint)
  try {
    const st = await callJsonSocket<{ pid: number }>(clientSocket(mp), { cmd: 'status' }, 5000)
    await callJsonSocket(clientSocket(mp), { cmd: 'umount' }, 5000)
    await waitGone(st.pid, mp)
  } catch (e) {
    if (!(e instanceof SocketUnavailable)) throw e
    // No daemon: a killed one leaves a dead mount that only a lazy unmount clears.
    if (!(await isMounted(mp))) throw new LpError('EINVAL', `${mp} is not mounted`)
    await promisify(execFile)('fusermount', ['-uz', mp])
  }
}

async function waitGone(pid: number, mp: string): Promise<void> {
  const deadline = Date.now() + 30_000
  while (Date.now() < deadline) {
    if (!alive(pid) && !(await isMounted(mp))) return
    await new Promise((r) => setTimeout(r, 50))
  }
  throw new LpError('ETIMEDOUT', `the mount daemon of ${mp} (pid ${pid}) did not finish unmounting`)
}

/** Whether process `pid` still exists. */
export function alive(pid: number): boolean {
  try {
    process.kill(pid, 0)
    return true
  } catch {
    return false
  }
}
