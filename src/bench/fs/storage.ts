import { existsSync, promises as fsp } from 'node:fs'
import os from 'node:os'
import path from 'node:path'

/** What backs a directory, for the record: the goals assume memory (tmpfs). */
const TMPFS_MAGIC = 0x01021994

export async function storageOf(dir: string): Promise<string> {
  const st = await fsp.statfs(dir).catch(() => null)
  if (!st) return 'unknown storage'
  return st.type === TMPFS_MAGIC ? 'tmpfs' : `a filesystem of type 0x${st.type.toString(16)} (not tmpfs)`
}

/** A new directory on tmpfs (/dev/shm) where the machine has one, else in the temporary directory. */
export function memoryDir(prefix: string): Promise<string> {
  return fsp.mkdtemp(path.join(existsSync('/dev/shm') ? '/dev/shm' : os.tmpdir(), prefix))
}
