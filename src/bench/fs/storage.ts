import { promises as fsp } from 'node:fs'

/** What backs a directory, for the record: the goals assume memory (tmpfs). */
const TMPFS_MAGIC = 0x01021994

export async function storageOf(dir: string): Promise<string> {
  const st = await fsp.statfs(dir).catch(() => null)
  if (!st) return 'unknown storage'
  return st.type === TMPFS_MAGIC ? 'tmpfs' : `a filesystem of type 0x${st.type.toString(16)} (not tmpfs)`
}
