import { execFile } from 'node:child_process'
import { existsSync } from 'node:fs'
import path from 'node:path'
import { promisify } from 'node:util'

/** Tools the harness runs (fio, sshfs, sshd, rclone, bindfs), installed from Debian when missing. */
export interface Tool {
  bin: string
  pkg: string
}

export const TOOLS = {
  fio: { bin: 'fio', pkg: 'fio' },
  sshfs: { bin: 'sshfs', pkg: 'sshfs' },
  sshd: { bin: 'sshd', pkg: 'openssh-server' },
  sshKeygen: { bin: 'ssh-keygen', pkg: 'openssh-client' },
  rclone: { bin: 'rclone', pkg: 'rclone' },
  bindfs: { bin: 'bindfs', pkg: 'bindfs' },
} satisfies Record<string, Tool>

/** Whether `bin` is installed (on PATH, or in the sbin directories root's PATH has). */
export function onPath(bin: string): boolean {
  const dirs = [...(process.env.PATH ?? '').split(':'), '/usr/sbin', '/sbin']
  return dirs.some((d) => d && existsSync(path.join(d, bin)))
}

export async function ensureTools(tools: Tool[], say: (line: string) => void): Promise<void> {
  const pkgs = [...new Set(tools.filter((t) => !onPath(t.bin)).map((t) => t.pkg))]
  if (!pkgs.length) return
  say(`installing ${pkgs.join(', ')} from Debian`)
  const run = promisify(execFile)
  const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' }
  try {
    await run('apt-get', ['update', '-qq'], { env })
    await run('apt-get', ['install', '-y', '-qq', '--no-install-recommends', ...pkgs], { env, maxBuffer: 16 << 20 })
  } catch (e) {
    throw new Error(`installing ${pkgs.join(', ')} failed (apt-get, as root): ${(e as { stderr?: string }).stderr?.trim() || (e as Error).message}`)
  }
  const still = tools.filter((t) => !onPath(t.bin)).map((t) => t.bin)
  if (still.length) throw new Error(`${still.join(', ')} still missing after installing ${pkgs.join(', ')}`)
}
