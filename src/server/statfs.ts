import { promises as fsp } from 'node:fs'
import type { StatfsReply } from '../protocol/ops.js'

/** The statfs of the storage a target lives on (what ldiskfs would report). */
export async function fsStatfs(dir: string): Promise<StatfsReply> {
  const s = await fsp.statfs(dir)
  return { bsize: s.bsize, blocks: s.blocks, bfree: s.bfree, bavail: s.bavail, files: s.files, ffree: s.ffree, namemax: 255 }
}
