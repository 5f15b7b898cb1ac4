import { promises as fsp } from 'node:fs'
import path from 'node:path'
import { TOOLS, type Tool } from '../install.js'
import { ChildMount } from './child.js'
import { freePort, startService, type Service } from './service.js'
import { startSshd } from './sshd.js'
import { storageOf } from './storage.js'
import type { BenchFs } from './types.js'

/**
 * What `--compare` measures lproxy against, each serving a directory of `work` (on tmpfs,
 * like the cluster's targets) through FUSE: sshfs to localhost (default and tuned), rclone
 * mount of a local rclone serve webdav with its cache off, and tuned bindfs (the C FUSE ceiling).
 */
export interface Peer {
  name: string
  tools: Tool[]
  open(work: string): Promise<BenchFs>
}

const SSHFS_TUNED = 'Ciphers=aes128-gcm@openssh.com,max_conns=4'
const BINDFS_TUNED = ['-o', 'big_writes,max_write=131072', '--multithreaded']

export const PEERS: Peer[] = [
  sshfsPeer('sshfs', []),
  sshfsPeer('sshfs-tuned', ['-o', SSHFS_TUNED]),
  {
    name: 'rclone',
    tools: [TOOLS.rclone],
    open: (work) =>
      withServer(work, 'rclone', async (dir, store) => {
        const conf = path.join(dir, 'rclone.conf')
        await fsp.writeFile(conf, '')
        const port = await freePort()
        const svc = await startService('rclone serve webdav', ['rclone', 'serve', 'webdav', store, '--addr', `127.0.0.1:${port}`, '--config', conf], port)
        const argv = ['rclone', 'mount', ':webdav:', path.join(dir, 'mnt'), '--webdav-url', `http://127.0.0.1:${port}`, '--vfs-cache-mode', 'off', '--config', conf]
        return { svc, argv }
      }),
  },
  {
    name: 'bindfs',
    tools: [TOOLS.bindfs],
    open: (work) => withServer(work, 'bindfs', async (dir, store) => ({ svc: null, argv: ['bindfs', '-f', ...BINDFS_TUNED, store, path.join(dir, 'mnt')] })),
  },
]

function sshfsPeer(name: string, extra: string[]): Peer {
  return {
    name,
    tools: [TOOLS.sshfs, TOOLS.sshd, TOOLS.sshKeygen],
    open: (work) =>
      withServer(work, name, async (dir, store) => {
        const svc = await startSshd(path.join(dir, 'sshd'))
        const login = `IdentityFile=${svc.identity},StrictHostKeyChecking=no,UserKnownHostsFile=/dev/null,BatchMode=yes`
        return { svc, argv: ['sshfs', '-f', `root@127.0.0.1:${store}`, path.join(dir, 'mnt'), '-p', String(svc.port), '-o', login, ...extra] }
      }),
  }
}

/** Store and mountpoint in work/<name>, the server (if any) started, the mount made; on failure nothing is left running. */
async function withServer(work: string, name: string, start: (dir: string, store: string) => Promise<{ svc: Service | null; argv: string[] }>): Promise<BenchFs> {
  const dir = path.join(work, name)
  const store = path.join(dir, 'store')
  await fsp.mkdir(path.join(dir, 'mnt'), { recursive: true })
  await fsp.mkdir(store, { recursive: true })
  const { svc, argv } = await start(dir, store)
  const description = `${argv.join(' ')} (store on ${await storageOf(store)})`
  const fs = new ChildMount(name, description, path.join(dir, 'mnt'), argv, async () => svc?.stop())
  try {
    await fs.mount()
  } catch (e) {
    await svc?.stop()
    throw e
  }
  return fs
}
