import { promises as fsp } from 'node:fs'
import path from 'node:path'

/** FUSE mounts of this machine, from /proc/mounts. */
export async function fuseMounts(): Promise<Array<{ source: string; mountpoint: string; type: string }>> {
  const text = await fsp.readFile('/proc/mounts', 'utf8')
  return text
    .split('\n')
    .map((l) => l.split(' '))
    .filter((f) => f.length > 2 && f[2]!.startsWith('fuse'))
    .map((f) => ({ source: f[0]!, mountpoint: unescape(f[1]!), type: f[2]! }))
}

function unescape(s: string): string {
  return s.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8)))
}

export async function isMounted(mountpoint: string): Promise<boolean> {
  const mp = path.resolve(mountpoint)
  return (await fuseMounts()).some((m) => m.mountpoint === mp)
}
