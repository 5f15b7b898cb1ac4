import { LpError } from '../protocol/errno.js'
import { typeBits } from '../llite/stat.js'
import type { FuseFs } from './binding.js'

/**
 * Directory listings for a binding that speaks in inode numbers. The kernel asks for '..'
 * by the directory's inode alone: the MDT's attributes of a directory name its parent. An
 * open directory's listing is a snapshot taken at offset 0 (opendir or rewinddir), so that a
 * listing read in several calls is consistent.
 */
export interface Listing {
  names: string[]
  inos: number[]
  /** S_IFMT bits. */
  types: number[]
}

const DIR = typeBits('dir')

export class DirListings {
  private readonly open = new Map<number, Listing | null>()
  private nextFh = 1

  constructor(private readonly llite: Pick<FuseFs, 'listDir'>) {}

  opendir(): number {
    const fh = this.nextFh++
    this.open.set(fh, null)
    return fh
  }

  async read(fh: number, fid: number, offset: number): Promise<Listing> {
    if (!this.open.has(fh)) throw new LpError('EBADF', `no open directory ${fh}`)
    let listing = this.open.get(fh)
    if (!listing || offset === 0) {
      listing = await this.list(fid)
      if (this.open.has(fh)) this.open.set(fh, listing)
    }
    return listing
  }

  releasedir(fh: number): void {
    this.open.delete(fh)
  }

  private async list(fid: number): Promise<Listing> {
    const { attr, entries } = await this.llite.listDir(fid)
    // A server that does not name the parent: '..' shows as the directory itself.
    const listing: Listing = { names: ['.', '..'], inos: [fid, attr.parent ?? fid], types: [DIR, DIR] }
    for (const e of entries) {
      listing.names.push(e.name)
      listing.inos.push(e.fid)
      listing.types.push(typeBits(e.type))
    }
    return listing
  }
}
