import type { FileType, MdtAttr } from '../protocol/ops.js'
import type { Glimpse } from '../lov/lov.js'

/** POSIX attributes as llite reports them; the inode number is the FID (stable everywhere). */
export interface PosixStat {
  ino: number
  mode: number
  nlink: number
  uid: number
  gid: number
  size: number
  blocks: number
  blksize: number
  atime: number
  mtime: number
  ctime: number
}

export const S_IFMT = 0o170000
const TYPE_BITS: Record<FileType, number> = { reg: 0o100000, dir: 0o040000, lnk: 0o120000 }

export function typeBits(t: FileType): number {
  return TYPE_BITS[t]
}

/** Regular files take size, blocks and the newer mtime from their objects (the glimpse). */
export function toStat(a: MdtAttr, g?: Glimpse): PosixStat {
  const mtime = g ? Math.max(a.mtime, g.mtime) : a.mtime
  return {
    ino: a.fid,
    mode: TYPE_BITS[a.type] | a.mode,
    nlink: a.nlink,
    uid: a.uid,
    gid: a.gid,
    size: g ? g.size : a.type === 'reg' ? 0 : a.size,
    blocks: g ? g.blocks : Math.ceil(a.size / 512),
    blksize: a.layout?.stripe_size ?? 4096,
    atime: a.atime,
    mtime,
    ctime: Math.max(a.ctime, mtime),
  }
}
