import { promises as fsp } from 'node:fs'
import path from 'node:path'
import { type KeyClass, deriveKey, generateKey, readKeyFile, writeKeyFile } from '../common/keyfile.js'

/**
 * The embedded cluster's keys, in <dir>/keys (0700): the master key its targets are formatted
 * with, and the keys derived from it for its mount (fs) and its administrator (admin).
 */
export function clusterKeys(dir: string): { dir: string; master: string } & Record<Exclude<KeyClass, 'node'>, string> {
  const k = path.join(dir, 'keys')
  return { dir: k, master: path.join(k, 'master.key'), fs: path.join(k, 'fs.key'), admin: path.join(k, 'admin.key') }
}

/** Makes what is missing (all of it afresh with `reformat`: a reformatted cluster gets a new key). */
export async function makeClusterKeys(dir: string, fsname: string, reformat: boolean): Promise<void> {
  const k = clusterKeys(dir)
  if (reformat) await fsp.rm(k.dir, { recursive: true, force: true })
  await fsp.mkdir(k.dir, { recursive: true, mode: 0o700 })
  const have = async (f: string) => fsp.access(f).then(() => true, () => false)
  if (!(await have(k.master))) await writeKeyFile(k.master, generateKey(fsname))
  const master = await readKeyFile(k.master)
  for (const cls of ['fs', 'admin'] as const) if (!(await have(k[cls]))) await writeKeyFile(k[cls], deriveKey(master, cls))
}
