import { describe, expect, it } from 'vitest'
import { DirListings } from '../../src/fuse/dirs.js'
import type { DirPage } from '../../src/llite/llite.js'
import { LpError } from '../../src/protocol/errno.js'
import type { DirEntry, MdtAttr } from '../../src/protocol/ops.js'

const DIR_FID = 7
const attr: MdtAttr = { fid: DIR_FID, type: 'dir', mode: 0o755, uid: 0, gid: 0, nlink: 2, atime: 0, mtime: 0, ctime: 0, size: 0, parent: 1 }

/** A directory on a stand-in MDT: entries in cookie order, pages of `count`; `cookies` false: an older MDT's entries, without. */
function mdt(n: number, cookies = true) {
  let entries: DirEntry[] = Array.from({ length: n }, (_, i) => ({ name: `f${i}`, fid: 100 + i, type: 'reg', cookie: i + 1 }))
  let next = n + 1
  const asked: number[] = []
  let gone = false
  const fs = {
    listDirPage: async (_fid: number, cookie: number, count: number): Promise<DirPage> => {
      asked.push(cookie)
      if (gone) throw new LpError('ENOENT', 'no FID 7')
      const after = entries.filter((e) => e.cookie! > cookie)
      const page = after.slice(0, count)
      return { attr, entries: cookies ? page : page.map(({ cookie: _, ...e }) => e), next: after.length > count ? page.at(-1)!.cookie! : null }
    },
  }
  return {
    dirs: new DirListings(fs),
    asked,
    remove: (name: string) => (entries = entries.filter((e) => e.name !== name)),
    add: (name: string) => entries.push({ name, fid: 100 + next, type: 'reg', cookie: next++ }),
    rmdir: () => (gone = true),
  }
}

/** What a reader gets taking `take` entries per call (the kernel's buffer), resuming at the offset of the last it took. */
async function readAll(dirs: DirListings, fh: number, take: number, between?: (names: string[]) => void): Promise<string[]> {
  const names: string[] = []
  let off = 0
  for (;;) {
    const l = await dirs.read(fh, DIR_FID, off)
    if (!l.names.length) return names
    names.push(...l.names.slice(0, take))
    off = l.offs[Math.min(take, l.names.length) - 1]!
    between?.(names)
  }
}

describe('directory listings, a page at a time', () => {
  it("lists '.', '..' and every entry once, asking the MDT once per page, however little the kernel takes per call", async () => {
    const m = mdt(2500)
    const fh = m.dirs.opendir()
    const names = await readAll(m.dirs, fh, 97)
    expect(names).toEqual(['.', '..', ...Array.from({ length: 2500 }, (_, i) => `f${i}`)])
    // Three pages of 1000; the last says it is the end.
    expect(m.asked).toEqual([0, 1000, 2000])
    const first = await m.dirs.read(fh, DIR_FID, 0)
    expect([first.names.slice(0, 3), first.inos.slice(0, 3), first.offs.slice(0, 3)]).toEqual([['.', '..', 'f0'], [DIR_FID, 1, 100], [1, 2, 3]])
  })

  it('resumes after the entry an offset names, through removals and additions, as telldir and seekdir need', async () => {
    const m = mdt(3000)
    const fh = m.dirs.opendir()
    let changed = false
    const names = await readAll(m.dirs, fh, 250, (got) => {
      if (changed || got.length < 500) return
      changed = true
      for (let i = 1500; i < 3000; i += 2) m.remove(`f${i}`)
      m.add('late')
    })
    const stay = Array.from({ length: 3000 }, (_, i) => `f${i}`).filter((n, i) => i < 1500 || i % 2 === 1 || names.includes(n))
    expect(new Set(names).size).toBe(names.length)
    expect(names.filter((n) => n.startsWith('f'))).toEqual(stay)
    expect(names.at(-1)).toBe('late')
    // An offset handed out earlier resumes right after its entry, from any handle.
    const other = m.dirs.opendir()
    const at = await m.dirs.read(other, DIR_FID, 0)
    const resumed = await m.dirs.read(other, DIR_FID, at.offs[10]!)
    expect(resumed.names[0]).toBe(at.names[11])
  })

  it('keeps one page per open directory, and forgets it at releasedir', async () => {
    const m = mdt(5000)
    const handles = [m.dirs.opendir(), m.dirs.opendir(), m.dirs.opendir()]
    for (const fh of handles) expect((await m.dirs.read(fh, DIR_FID, 0)).names.slice(0, 3)).toEqual(['.', '..', 'f0'])
    // The rest of each handle's first page comes from the page it keeps.
    for (const fh of handles) expect((await m.dirs.read(fh, DIR_FID, 900)).names[0]).toBe('f898')
    expect(m.asked).toEqual([0, 0, 0])
    m.dirs.releasedir(handles[0]!)
    await expect(m.dirs.read(handles[0]!, DIR_FID, 5)).rejects.toMatchObject({ code: 'EBADF' })
  })

  it('ends a listing whose directory was removed meanwhile, as Linux does; a new listing of it fails', async () => {
    const m = mdt(1500)
    const fh = m.dirs.opendir()
    await m.dirs.read(fh, DIR_FID, 0)
    m.rmdir()
    // Past the page it keeps (entries up to cookie 1000, offset 1002).
    expect((await m.dirs.read(fh, DIR_FID, 1002)).names).toEqual([])
    await expect(m.dirs.read(m.dirs.opendir(), DIR_FID, 0)).rejects.toMatchObject({ code: 'ENOENT' })
  })

  it('numbers the entries itself, reading the whole directory at once, for an MDT that gives no cookies', async () => {
    const m = mdt(2500, false)
    const fh = m.dirs.opendir()
    expect(await readAll(m.dirs, fh, 300)).toEqual(['.', '..', ...Array.from({ length: 2500 }, (_, i) => `f${i}`)])
    // Its pages read once, each after the cookie its predecessor's `next` gave; every offset then served from them.
    expect(m.asked).toEqual([0, 1000, 2000])
  })
})
