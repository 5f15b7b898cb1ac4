import { promises as fsp } from 'node:fs'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import type { Command } from 'commander'
import { command, print } from './server.js'

/**
 * `lproxy install`: put this checkout where an admin's tools look for it: `lproxy` on PATH,
 * mount(8)'s helper in /sbin, the systemd unit, logrotate's file and an example configuration.
 * The bootstrap runs it; systemd itself is not needed (nothing is started or reloaded).
 */
const REPO = fileURLToPath(new URL('../..', import.meta.url))

interface Item {
  /** Where it goes, under --root. */
  to: string
  /** What it is, in this checkout. */
  from: string
  how: 'link' | 'copy' | 'example'
}

const ITEMS: Item[] = [
  { to: 'usr/local/bin/lproxy', from: 'bin/lproxy.js', how: 'link' },
  { to: 'sbin/mount.lproxy', from: 'bin/mount.lproxy.js', how: 'link' },
  { to: 'etc/systemd/system/lproxy-target@.service', from: 'systemd/lproxy-target@.service', how: 'copy' },
  { to: 'etc/logrotate.d/lproxy', from: 'systemd/lproxy.logrotate', how: 'copy' },
  // The admin's own once written: never overwritten.
  { to: 'etc/lproxy/lproxy.conf', from: 'systemd/lproxy.conf', how: 'example' },
]

export function registerInstallCommand(program: Command): void {
  command(program, 'install', 'link lproxy into /usr/local/bin and mount.lproxy into /sbin; install the systemd unit and the logrotate file')
    .option('--root <dir>', 'install under this directory instead of /', '/')
    .action(async (o: { root: string }) => {
      for (const it of ITEMS) print([await install(path.resolve(o.root), it)])
    })
}

async function install(root: string, it: Item): Promise<string> {
  const dest = path.join(root, it.to)
  const src = path.join(REPO, it.from)
  await fsp.mkdir(path.dirname(dest), { recursive: true })
  const st = await fsp.lstat(dest).catch(() => null)
  if (it.how === 'example' && st) return `${dest}: kept (exists)`
  if (it.how === 'link') {
    // A link is ours to repoint; a file of the same name is someone else's.
    if (st && !st.isSymbolicLink()) throw new Error(`${dest} exists and is not a link: remove it first`)
    const tmp = `${dest}.lproxy-${process.pid}`
    await fsp.symlink(src, tmp)
    await fsp.rename(tmp, dest)
    return `${dest} -> ${src}`
  }
  await fsp.copyFile(src, dest)
  return `${dest}: installed`
}
