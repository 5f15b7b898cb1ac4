import { isLpError, LpError } from '../protocol/errno.js'
import type { DirEntry } from '../protocol/ops.js'
import { typeBits } from '../llite/stat.js'
import { READDIR_PAGE, wholeListing } from '../llite/llite.js'
import type { FuseFs } from './binding.js'

/**
 * Directory listings for a binding that speaks in inode numbers, read a page at a time. A
 * readdir at offset k resumes after the entry that had offset k: '.' has 1, '..' 2 (the
 * kernel asks for '..' by the directory's inode alone: the MDT's attributes of a directory
 * name its parent), an entry the MDT gave the cookie c has c + 2. So a listing read in many
 * calls, a telldir and seekdir, resume where they were without a snapshot of the directory:
 * as POSIX has it, a name added or removed meanwhile may or may not show, any other shows
 * once. An open directory keeps the last page it read from the MDT (READDIR_PAGE entries),
 * which serves the kernel's smaller requests.
 */
export interface Listing {
  names: string[]
  inos: number[]
  /** S_IFMT bits. */
  types: number[]
  /** The offset each entry has: a readdir at it resumes after the entry. */
  offs: number[]
}

type Cookied = DirEntry & { cookie: number }

const cookied = (e: DirEntry): e is Cookied => e.cookie !== undefined

interface Page {
  /** The cookie it was read after. */
  from: number
  parent: number
  entries: Cookied[]
  next: number | null
}

const DIR = typeBits('dir')
/** Entries offered per reply: the kernel asks for a page (4 KiB) at a time, and asks again for what did not fit. */
const PER_REPLY = 512

/** A page read after `from` holds what follows `cookie` if `cookie` falls within it. */
function covers(p: Page, cookie: number): boolean {
  return p.from <= cookie && (p.next === null || cookie < p.next)
}

export class DirListings {
  private readonly open = new Map<number, Page | null>()
  private nextFh = 1

  constructor(private readonly llite: Pick<FuseFs, 'listDirPage'>) {}

  opendir(): number {
    const fh = this.nextFh++
    this.open.set(fh, null)
    return fh
  }

  async read(fh: number, fid: number, offset: number): Promise<Listing> {
    if (!this.open.has(fh)) throw new LpError('EBADF', `no open directory ${fh}`)
    const cookie = Math.max(0, offset - 2)
    let page = this.open.get(fh)
    // From the start (opendir, rewinddir) the directory is read afresh.
    if (!page || offset === 0 || !covers(page, cookie)) {
      const read = await this.page(fid, cookie, offset)
      if (!read) return { names: [], inos: [], types: [], offs: [] }
      page = read
      if (this.open.has(fh)) this.open.set(fh, page)
    }
    const out: Listing = { names: [], inos: [], types: [], offs: [] }
    const add = (name: string, ino: number, type: number, off: number) => {
      out.names.push(name)
      out.inos.push(ino)
      out.types.push(type)
      out.offs.push(off)
    }
    if (offset < 1) add('.', fid, DIR, 1)
    if (offset < 2) add('..', page.parent, DIR, 2)
    const from = page.entries.findIndex((e) => e.cookie > cookie)
    if (from >= 0) for (const e of page.entries.slice(from, from + PER_REPLY)) add(e.name, e.fid, typeBits(e.type), e.cookie + 2)
    return out
  }

  releasedir(fh: number): void {
    this.open.delete(fh)
  }

  /** The page after `cookie`; none (the end) for a directory removed while a listing of it was under way, as Linux's are empty. */
  private async page(fid: number, cookie: number, offset: number): Promise<Page | null> {
    try {
      const { attr, entries, next } = await this.llite.listDirPage(fid, cookie, READDIR_PAGE)
      // A server that does not name the parent: '..' shows as the directory itself.
      const parent = attr.parent ?? fid
      if (entries.every(cookied)) return { from: cookie, parent, entries, next }
      // An older MDT: the whole directory, numbered here (the page just read is its start if `cookie` is 0).
      let all: DirEntry[]
      if (cookie !== 0) all = await this.rest(fid, 0)
      else all = next === null ? entries : [...entries, ...(await this.rest(fid, next))]
      return { from: 0, parent, entries: all.map((e, i) => ({ ...e, cookie: i + 1 })), next: null }
    } catch (e) {
      if (offset > 0 && isLpError(e, 'ENOENT')) return null
      throw e
    }
  }

  /** Every entry after `cookie`, to the end of the directory. */
  private rest(fid: number, cookie: number): Promise<DirEntry[]> {
    return wholeListing((c) => this.llite.listDirPage(fid, c, READDIR_PAGE), cookie)
  }
}
