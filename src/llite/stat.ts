import type { FileType, MdtAttr } from '../protocol/ops.js'
import type { Glimpse } from '../lov/lov.js'

/** POSIX attributes as llite reports them; the inode number is the FID (stable everywhere). */
export interface PosixStat {
  ino: number
  mode: number
  nlink: number
  /** Devices' number (new_encode_dev), 0 for the rest. */
  rdev: number
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
const TYPE_BITS: Record<FileType, number> = { reg: 0o100000, dir: 0o040000, lnk: 0o120000, fifo: 0o010000, chr: 0o020000, blk: 0o060000, sock: 0o140000 }
const TYPE_OF = new Map(Object.entries(TYPE_BITS).map(([t, b]) => [b, t as FileType]))

export function typeBits(t: FileType): number {
  return TYPE_BITS[t]
}

/** The file type of a mode's S_IFMT bits (mknod's), or undefined for bits that name none. */
export function typeOf(mode: number): FileType | undefined {
  return TYPE_OF.get(mode & S_IFMT)
}

/** Regular files take size, blocks and the newer mtime from their objects (the glimpse). */
export function toStat(a: MdtAttr, g?: Glimpse): PosixStat {
  const mtime = g ? Math.max(a.mtime, g.mtime) : a.mtime
  return {
    ino: a.fid,
    mode: TYPE_BITS[a.type] | a.mode,
    nlink: a.nlink,
    rdev: a.rdev ?? 0,
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
