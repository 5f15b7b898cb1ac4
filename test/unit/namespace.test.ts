import { describe, it, expect } from 'vitest'
import { Namespace, ROOT_FID, nsImageSchema, type NsRedo } from '../../src/server/mdt/namespace.js'
import { LpError } from '../../src/protocol/errno.js'
import { MAX_LINK, type Layout, type OpArgs } from '../../src/protocol/ops.js'
import type { Redo } from '../../src/server/target/backend.js'

const T0 = 1_700_000_000_000
const LAYOUT: Layout = { stripe_size: 1 << 20, osts: [1, 2] }

/** A namespace and the redo of everything done to it, as the target would journal it. */
function fresh() {
  const ns = Namespace.fresh(T0)
  const journal: Redo[] = []
  let time = T0
  const run = <R>(fn: () => R): R => {
    const { result, redo } = ns.tx(fn)
    journal.push(...redo)
    return result
  }
  const t = () => ++time
  // The first FID range, granted and committed as the MDT does before its first create.
  run(() => ns.grantRange())
  ns.rangeCommitted((journal.at(-1)!.rec as { v: number }).v)
  const create = (parent: number, name: string, type: 'reg' | 'dir' | 'lnk' = 'reg', extra: Partial<OpArgs<'mdt_create'>> = {}, client = 'c1') =>
    run(() => ns.create({ parent, name, type, mode: 0o644, uid: 1, gid: 1, time: t(), ...extra } as OpArgs<'mdt_create'>, client))
  const mkdir = (parent: number, name: string) => create(parent, name, 'dir').attr.fid
  const file = (parent: number, name: string, extra: Partial<OpArgs<'mdt_create'>> = {}) => create(parent, name, 'reg', extra).attr.fid
  const unlink = (parent: number, name: string, dir = false) => run(() => ns.unlink({ parent, name, dir, time: t() }))
  const rename = (parent: number, name: string, new_parent: number, new_name: string, noreplace?: boolean) =>
    run(() => ns.rename({ parent, name, new_parent, new_name, time: t(), noreplace }))
  const link = (fid: number, parent: number, name: string) => run(() => ns.link({ fid, parent, name, time: t() }))
  const open = (fid: number, client = 'c1') => run(() => ns.open({ fid, flags: 0 }, client)).handle
  const close = (h: string, client = 'c1') => run(() => ns.close(h, client))
  const names = (fid: number) => ns.readdir(fid, 0, 10000).entries.map((e) => e.name)
  return { ns, journal, run, create, mkdir, file, unlink, rename, link, open, close, names }
}

function errno(fn: () => unknown): string {
  try {
    fn()
  } catch (e) {
    if (e instanceof LpError) return e.code
    throw e
  }
  return 'no error'
}

/** Replay a journal on a fresh namespace (what a restart does). */
function replayed(journal: Redo[]): Namespace {
  const ns = Namespace.fresh(T0)
  for (const r of journal) ns.redo(r.rec as unknown as NsRedo)
  return ns
}

describe('namespace: create', () => {
  it('creates files, directories and symlinks with their attributes', () => {
    const f = fresh()
    const d = f.mkdir(ROOT_FID, 'd')
    expect(f.ns.inode(d)).toMatchObject({ type: 'dir', nlink: 2, size: 4096 })
    expect(f.ns.inode(ROOT_FID).nlink).toBe(3)
    const file = f.file(d, 'f', { layout: LAYOUT, mode: 0o100640 })
    expect(f.ns.inode(file)).toMatchObject({ type: 'reg', nlink: 1, size: 0, mode: 0o640, layout: LAYOUT })
    const l = f.create(d, 'l', 'lnk', { target: '../somewhere/else' }).attr
    expect(l).toMatchObject({ type: 'lnk', size: 17, target: '../somewhere/else' })
    expect(f.ns.lookup(d, 'f').fid).toBe(file)
    expect(f.ns.inode(d).nlink).toBe(2)
    expect(f.ns.inode(d).mtime).toBe(f.ns.inode(l.fid).ctime)
    expect(new Set([d, file, l.fid]).size).toBe(3)
  })

  it('says why it cannot create', () => {
    const f = fresh()
    const d = f.mkdir(ROOT_FID, 'd')
    const file = f.file(d, 'f')
    expect(errno(() => f.file(d, 'f'))).toBe('EEXIST')
    expect(errno(() => f.mkdir(d, 'f'))).toBe('EEXIST')
    expect(errno(() => f.file(999, 'x'))).toBe('ENOENT')
    expect(errno(() => f.file(file, 'x'))).toBe('ENOTDIR')
    expect(errno(() => f.create(d, 'l', 'lnk'))).toBe('EINVAL')
    expect(errno(() => f.create(d, 'x', 'reg', { target: 'y' }))).toBe('EINVAL')
    expect(errno(() => f.create(d, 'x', 'dir', { layout: LAYOUT }))).toBe('EINVAL')
    // open(O_CREAT) of an existing file opens it; with O_EXCL it is EEXIST; a directory is EISDIR.
    const again = f.create(d, 'f', 'reg', { open_flags: 2 })
    expect(again.attr.fid).toBe(file)
    expect(again.handle).toMatch(/^[0-9a-f]{16}$/)
    expect(f.ns.isOpen(file)).toBe(true)
    expect(errno(() => f.create(d, 'f', 'reg', { open_flags: 2, exclusive: true }))).toBe('EEXIST')
    f.mkdir(d, 'sub')
    expect(errno(() => f.create(d, 'sub', 'reg', { open_flags: 2 }))).toBe('EISDIR')
  })

  it('a replayed create reuses the FID and open handle of the original', () => {
    const f = fresh()
    const orig = f.create(ROOT_FID, 'a', 'reg', { open_flags: 0 })
    // After a restart that lost it, the same create replayed:
    const g = fresh()
    const r = g.run(() =>
      g.ns.create({ parent: ROOT_FID, name: 'a', type: 'reg', mode: 0o644, uid: 1, gid: 1, time: 5, open_flags: 0 }, 'c1', { attr: orig.attr, handle: orig.handle }),
    )
    expect(r.attr.fid).toBe(orig.attr.fid)
    expect(r.handle).toBe(orig.handle)
    // A FID in use cannot be taken again.
    expect(errno(() => g.run(() => g.ns.create({ parent: ROOT_FID, name: 'b', type: 'reg', mode: 0, uid: 0, gid: 0, time: 1 }, 'c1', { attr: orig.attr })))).toBe('EEXIST')
    // New FIDs continue past the replayed one.
    expect(g.file(ROOT_FID, 'c')).toBeGreaterThan(orig.attr.fid)
  })
})

describe('namespace: link, unlink, rmdir', () => {
  it('counts hard links', () => {
    const f = fresh()
    const d = f.mkdir(ROOT_FID, 'd')
    const file = f.file(ROOT_FID, 'f', { layout: LAYOUT })
    expect(f.link(file, d, 'g').attr.nlink).toBe(2)
    expect(f.ns.lookup(d, 'g').fid).toBe(file)
    expect(errno(() => f.link(file, d, 'g'))).toBe('EEXIST')
    expect(errno(() => f.link(d, ROOT_FID, 'dirlink'))).toBe('EPERM')
    expect(errno(() => f.link(file, file, 'x'))).toBe('ENOTDIR')
    expect(f.unlink(ROOT_FID, 'f')).toMatchObject({ fid: file, nlink: 1 })
    expect(f.ns.inode(file).nlink).toBe(1)
    expect(f.ns.llog.size).toBe(0)
    expect(f.unlink(d, 'g')).toMatchObject({ fid: file, nlink: 0 })
    expect(errno(() => f.ns.inode(file))).toBe('ENOENT')
    // Its objects go to the llog, to be destroyed on the OSTs.
    expect(f.ns.llog.get(file)).toEqual(LAYOUT)
  })

  it('says why it cannot remove', () => {
    const f = fresh()
    const d = f.mkdir(ROOT_FID, 'd')
    f.file(d, 'f')
    f.mkdir(ROOT_FID, 'empty')
    expect(errno(() => f.unlink(ROOT_FID, 'nope'))).toBe('ENOENT')
    expect(errno(() => f.unlink(ROOT_FID, 'd'))).toBe('EISDIR')
    expect(errno(() => f.unlink(d, 'f', true))).toBe('ENOTDIR')
    expect(errno(() => f.unlink(ROOT_FID, 'd', true))).toBe('ENOTEMPTY')
    expect(errno(() => f.unlink(f.ns.lookup(d, 'f').fid, 'x'))).toBe('ENOTDIR')
    expect(f.ns.inode(ROOT_FID).nlink).toBe(4)
    f.unlink(ROOT_FID, 'empty', true)
    expect(f.ns.inode(ROOT_FID).nlink).toBe(3)
    f.unlink(d, 'f')
    f.unlink(ROOT_FID, 'd', true)
    expect(f.ns.inode(ROOT_FID).nlink).toBe(2)
    expect(f.names(ROOT_FID)).toEqual([])
    // Files without objects leave nothing to destroy.
    expect(f.ns.llog.size).toBe(0)
  })
})

describe('namespace: rename', () => {
  it('moves files and directories, keeping directory link counts right', () => {
    const f = fresh()
    const a = f.mkdir(ROOT_FID, 'a')
    const b = f.mkdir(ROOT_FID, 'b')
    const sub = f.mkdir(a, 'sub')
    const file = f.file(a, 'file')
    const parent = (fid: number) => f.ns.attr(f.ns.inode(fid)).parent
    expect([f.ns.inode(ROOT_FID).nlink, f.ns.inode(a).nlink, f.ns.inode(b).nlink]).toEqual([4, 3, 2])
    expect([parent(ROOT_FID), parent(a), parent(sub), parent(file)]).toEqual([ROOT_FID, ROOT_FID, a, undefined])
    expect(f.rename(a, 'file', b, 'renamed').fid).toBe(file)
    expect(f.ns.lookup(b, 'renamed').fid).toBe(file)
    expect(errno(() => f.ns.lookup(a, 'file'))).toBe('ENOENT')
    expect(f.rename(a, 'sub', b, 'sub2').fid).toBe(sub)
    expect([f.ns.inode(a).nlink, f.ns.inode(b).nlink]).toEqual([2, 3])
    expect(parent(sub)).toBe(b)
    // Within one directory a directory's move changes no count.
    f.rename(b, 'sub2', b, 'sub3')
    expect(f.ns.inode(b).nlink).toBe(3)
    expect(f.names(b).sort()).toEqual(['renamed', 'sub3'])
    expect(f.ns.lookup(b, 'sub3').fid).toBe(sub)
    expect(parent(sub)).toBe(b)
  })

  it('replaces an existing file; a victim with another link only loses one', () => {
    const f = fresh()
    const x = f.file(ROOT_FID, 'x', { layout: LAYOUT })
    const y = f.file(ROOT_FID, 'y', { layout: LAYOUT })
    const z = f.file(ROOT_FID, 'z')
    f.link(z, ROOT_FID, 'z2')
    f.rename(ROOT_FID, 'x', ROOT_FID, 'y')
    expect(f.ns.lookup(ROOT_FID, 'y').fid).toBe(x)
    expect(errno(() => f.ns.inode(y))).toBe('ENOENT')
    expect([...f.ns.llog.keys()]).toEqual([y])
    f.rename(ROOT_FID, 'y', ROOT_FID, 'z')
    expect(f.ns.inode(z).nlink).toBe(1)
    expect(f.ns.lookup(ROOT_FID, 'z').fid).toBe(x)
    // Renaming one link onto another link of the same file does nothing.
    f.link(x, ROOT_FID, 'x2')
    f.rename(ROOT_FID, 'x2', ROOT_FID, 'z')
    expect(f.names(ROOT_FID).sort()).toEqual(['x2', 'z', 'z2'])
    expect(f.ns.inode(x).nlink).toBe(2)
  })

  it('replaces an empty directory, not a full one', () => {
    const f = fresh()
    const a = f.mkdir(ROOT_FID, 'a')
    const b = f.mkdir(ROOT_FID, 'b')
    const c = f.mkdir(b, 'c')
    f.file(c, 'inside')
    const e = f.mkdir(ROOT_FID, 'e')
    expect(f.ns.inode(ROOT_FID).nlink).toBe(5)
    f.rename(ROOT_FID, 'a', ROOT_FID, 'e')
    expect(f.ns.lookup(ROOT_FID, 'e').fid).toBe(a)
    expect(errno(() => f.ns.inode(e))).toBe('ENOENT')
    expect(f.ns.inode(ROOT_FID).nlink).toBe(4)
    // Across directories: the victim's parent loses a link, then gains the new one.
    const empty = f.mkdir(b, 'empty')
    f.rename(ROOT_FID, 'e', b, 'empty')
    expect(errno(() => f.ns.inode(empty))).toBe('ENOENT')
    expect([f.ns.inode(ROOT_FID).nlink, f.ns.inode(b).nlink]).toEqual([3, 4])
    expect(errno(() => f.rename(ROOT_FID, 'b', b, 'c'))).toBe('EINVAL')
    f.mkdir(ROOT_FID, 'd')
    expect(errno(() => f.rename(ROOT_FID, 'd', b, 'c'))).toBe('ENOTEMPTY')
  })

  it('says why it cannot rename', () => {
    const f = fresh()
    const a = f.mkdir(ROOT_FID, 'a')
    const sub = f.mkdir(a, 'sub')
    const deep = f.mkdir(sub, 'deep')
    f.file(ROOT_FID, 'file')
    f.mkdir(ROOT_FID, 'dir')
    const before = JSON.stringify(f.ns.image())
    expect(errno(() => f.rename(ROOT_FID, 'a', deep, 'a'))).toBe('EINVAL')
    expect(errno(() => f.rename(ROOT_FID, 'a', a, 'self'))).toBe('EINVAL')
    expect(errno(() => f.rename(a, 'sub', sub, 'x'))).toBe('EINVAL')
    expect(errno(() => f.rename(ROOT_FID, 'file', ROOT_FID, 'dir'))).toBe('EISDIR')
    expect(errno(() => f.rename(ROOT_FID, 'dir', ROOT_FID, 'file'))).toBe('ENOTDIR')
    expect(errno(() => f.rename(ROOT_FID, 'nope', ROOT_FID, 'x'))).toBe('ENOENT')
    expect(errno(() => f.rename(ROOT_FID, 'file', 999, 'x'))).toBe('ENOENT')
    expect(errno(() => f.rename(ROOT_FID, 'dir', f.ns.lookup(ROOT_FID, 'file').fid, 'x'))).toBe('ENOTDIR')
    expect(errno(() => f.rename(ROOT_FID, 'dir', ROOT_FID, 'a'))).toBe('ENOTEMPTY')
    // Nothing changed.
    expect(JSON.stringify(f.ns.image())).toBe(before)
    // Renaming onto itself is a no-op.
    f.rename(ROOT_FID, 'a', ROOT_FID, 'a')
    expect(f.ns.lookup(ROOT_FID, 'a').fid).toBe(a)
  })
})

describe('namespace: rename with noreplace (RENAME_NOREPLACE)', () => {
  it('refuses any existing new name, even the same file; a free name moves as usual', () => {
    const f = fresh()
    const file = f.file(ROOT_FID, 'file')
    f.file(ROOT_FID, 'other')
    const before = JSON.stringify(f.ns.image())
    expect(errno(() => f.rename(ROOT_FID, 'file', ROOT_FID, 'other', true))).toBe('EEXIST')
    expect(errno(() => f.rename(ROOT_FID, 'file', ROOT_FID, 'file', true))).toBe('EEXIST')
    expect(JSON.stringify(f.ns.image())).toBe(before)
    f.rename(ROOT_FID, 'file', ROOT_FID, 'free', true)
    expect(f.ns.lookup(ROOT_FID, 'free').fid).toBe(file)
  })
})

describe('namespace: readdir', () => {
  it('pages through a large directory with stable cookies', () => {
    const f = fresh()
    const d = f.mkdir(ROOT_FID, 'big')
    const N = 5000
    for (let i = 0; i < N; i++) f.file(d, `f${i}`)
    const seen: string[] = []
    const cookies: number[] = []
    let cookie = 0
    let pages = 0
    for (;;) {
      const r = f.ns.readdir(d, cookie, 333)
      seen.push(...r.entries.map((e) => e.name))
      pages++
      // Entries change between pages: removals before and after the cursor, additions.
      if (pages === 3) {
        f.unlink(d, 'f10') // already returned
        f.unlink(d, 'f4000') // not yet returned: must not show up
        f.file(d, 'late')
      }
      if (r.next === null) break
      expect(r.entries).toHaveLength(333)
      expect(r.next).toBeGreaterThan(cookie)
      cookies.push(r.next)
      cookie = r.next
    }
    expect(pages).toBe(Math.ceil((N - 1 + 1) / 333))
    const expected = [...Array(N).keys()].map((i) => `f${i}`).filter((n) => n !== 'f4000')
    expect(seen).toEqual([...expected, 'late'])
    // A cookie handed out earlier still resumes at the same place.
    const again = f.ns.readdir(d, cookies[0]!, 2)
    expect(again.entries.map((e) => e.name)).toEqual(['f333', 'f334'])
    expect(again.entries[0]).toMatchObject({ type: 'reg', fid: f.ns.lookup(d, 'f333').fid })
    expect(f.ns.readdir(d, 0, 10_000).next).toBeNull()
    expect(errno(() => f.ns.readdir(f.ns.lookup(d, 'f1').fid, 0, 10))).toBe('ENOTDIR')
  })

  it('resumes a page where the last one stopped, also when the entry it read past goes, comes back, or another listing interleaves', () => {
    const f = fresh()
    const d = f.mkdir(ROOT_FID, 'd')
    for (let i = 0; i < 10; i++) f.file(d, `f${i}`)
    const page = (cookie: number, n: number) => f.ns.readdir(d, cookie, n)
    const a1 = page(0, 3)
    expect(a1.entries.map((e) => [e.name, e.cookie])).toEqual([['f0', 1], ['f1', 2], ['f2', 3]])
    expect(a1.next).toBe(3)
    // f3 was read past by that page; it goes and comes back (with a new cookie, at the end).
    f.unlink(d, 'f3')
    const b1 = page(0, 5)
    f.file(d, 'f3')
    const a2 = page(a1.next!, 3)
    expect(a2.entries.map((e) => e.name)).toEqual(['f4', 'f5', 'f6'])
    const b2 = page(b1.next!, 100)
    expect([...b1.entries, ...b2.entries].map((e) => e.name)).toEqual(['f0', 'f1', 'f2', 'f4', 'f5', 'f6', 'f7', 'f8', 'f9', 'f3'])
    const a3 = page(a2.next!, 100)
    expect(a3.entries.map((e) => e.name)).toEqual(['f7', 'f8', 'f9', 'f3'])
    expect([a3.next, b2.next]).toEqual([null, null])
    // Every entry's cookie resumes right after it.
    for (const e of [...a1.entries, ...a2.entries]) expect(page(e.cookie!, 1).entries[0]!.cookie).toBeGreaterThan(e.cookie!)
  })

  it('gives a renamed entry a new cookie at the end', () => {
    const f = fresh()
    for (const n of ['a', 'b', 'c']) f.file(ROOT_FID, n)
    f.rename(ROOT_FID, 'a', ROOT_FID, 'z')
    expect(f.names(ROOT_FID)).toEqual(['b', 'c', 'z'])
    const first = f.ns.readdir(ROOT_FID, 0, 1)
    expect(first.entries.map((e) => e.name)).toEqual(['b'])
    expect(f.ns.readdir(ROOT_FID, first.next!, 10).entries.map((e) => e.name)).toEqual(['c', 'z'])
  })
})

describe('namespace: open files', () => {
  it('an unlinked open file lives until its last close, then its objects go to the llog', () => {
    const f = fresh()
    const fid = f.file(ROOT_FID, 'f', { layout: LAYOUT })
    const h1 = f.open(fid, 'c1')
    const h2 = f.open(fid, 'c2')
    expect(f.unlink(ROOT_FID, 'f')).toMatchObject({ fid, nlink: 0 })
    expect(f.names(ROOT_FID)).toEqual([])
    expect(f.ns.inode(fid).nlink).toBe(0)
    expect(f.ns.llog.size).toBe(0)
    // Still usable through the open handles; no new names.
    expect(errno(() => f.link(fid, ROOT_FID, 'back'))).toBe('ENOENT')
    expect(errno(() => f.close(h1, 'c2'))).toBe('EBADF')
    f.close(h1, 'c1')
    expect(f.ns.inode(fid).nlink).toBe(0)
    expect(errno(() => f.close(h1, 'c1'))).toBe('EBADF')
    f.close(h2, 'c2')
    expect(errno(() => f.ns.inode(fid))).toBe('ENOENT')
    expect(f.ns.llog.get(fid)).toEqual(LAYOUT)
    f.run(() => f.ns.cancelLlog(fid))
    expect(f.ns.llog.size).toBe(0)
  })

  it('a file replaced by rename while open lives until its close', () => {
    const f = fresh()
    const victim = f.file(ROOT_FID, 'v', { layout: LAYOUT })
    f.file(ROOT_FID, 'n')
    const h = f.open(victim)
    f.rename(ROOT_FID, 'n', ROOT_FID, 'v')
    expect(f.ns.inode(victim).nlink).toBe(0)
    f.close(h)
    expect(errno(() => f.ns.inode(victim))).toBe('ENOENT')
    expect([...f.ns.llog.keys()]).toEqual([victim])
  })

  it('a removed directory kept open takes no new entries', () => {
    const f = fresh()
    const a = f.mkdir(ROOT_FID, 'a')
    const d = f.mkdir(a, 'd')
    const file = f.file(ROOT_FID, 'file', { layout: LAYOUT })
    const h = f.open(d)
    f.unlink(a, 'd', true)
    expect(f.ns.inode(d).nlink).toBe(0)
    // No entry names it any more: its '..' is the root's.
    expect(f.ns.attr(f.ns.inode(d)).parent).toBe(ROOT_FID)
    expect(f.ns.readdir(d, 0, 10).entries).toEqual([])
    const before = JSON.stringify(f.ns.image())
    expect(errno(() => f.file(d, 'x', { layout: LAYOUT }))).toBe('ENOENT')
    expect(errno(() => f.mkdir(d, 'x'))).toBe('ENOENT')
    expect(errno(() => f.link(file, d, 'x'))).toBe('ENOENT')
    expect(errno(() => f.rename(ROOT_FID, 'file', d, 'x'))).toBe('ENOENT')
    expect(JSON.stringify(f.ns.image())).toBe(before)
    // Its last close removes it, leaving nothing behind.
    f.close(h)
    expect(f.ns.image().inodes.map((i) => i.fid).sort((x, y) => x - y)).toEqual([ROOT_FID, a, file])
  })

  it('dropping a client closes its opens only', () => {
    const f = fresh()
    const a = f.file(ROOT_FID, 'a', { layout: LAYOUT })
    const b = f.file(ROOT_FID, 'b', { layout: LAYOUT })
    f.open(a, 'gone')
    f.open(a, 'gone')
    const hb = f.open(b, 'stays')
    f.open(b, 'gone')
    f.unlink(ROOT_FID, 'a')
    f.unlink(ROOT_FID, 'b')
    f.run(() => f.ns.dropClient('gone'))
    expect(errno(() => f.ns.inode(a))).toBe('ENOENT')
    expect([...f.ns.llog.keys()]).toEqual([a])
    expect(f.ns.isOpen(b)).toBe(true)
    f.close(hb, 'stays')
    expect([...f.ns.llog.keys()].sort()).toEqual([a, b].sort())
  })
})

describe('namespace: redo equivalence', () => {
  /** A small seeded PRNG, so a failure can be reproduced. */
  function prng(seed: number) {
    let s = seed >>> 0
    return (n: number) => {
      s = (Math.imul(s, 1664525) + 1013904223) >>> 0
      return s % n
    }
  }

  for (const seed of [1, 2, 3, 42, 4242]) {
    it(`a random history replayed from its redo gives the same namespace (seed ${seed})`, () => {
      const rnd = prng(seed)
      const f = fresh()
      const ns = f.ns
      const pool = ['a', 'b', 'c', 'd', 'e', 'f', 'g', 'h']
      const handles: Array<{ h: string; client: string }> = []
      const clients = ['c1', 'c2', 'c3']
      let time = T0
      const dirs = () => [ROOT_FID, ...ns.image().inodes.filter((i) => i.type === 'dir' && i.nlink > 0).map((i) => i.fid)]
      const anyFid = () => {
        const all = ns.image().inodes.map((i) => i.fid)
        return rnd(10) === 0 ? 9999 : all[rnd(all.length)]!
      }
      const pick = <X>(xs: X[]) => xs[rnd(xs.length)]!
      const ops: Array<() => unknown> = [
        () => ns.create({ parent: pick(dirs()), name: pick(pool), type: 'reg', mode: rnd(0o7777), uid: rnd(5), gid: rnd(5), time: ++time, layout: rnd(2) ? LAYOUT : undefined }, pick(clients)),
        () => {
          const r = ns.create({ parent: pick(dirs()), name: pick(pool), type: 'reg', mode: 0o600, uid: 0, gid: 0, time: ++time, layout: LAYOUT, open_flags: 2, exclusive: rnd(2) === 0 }, pick(clients))
          if (r.handle) handles.push({ h: r.handle, client: 'c1' })
          return r
        },
        () => ns.create({ parent: pick(dirs()), name: pick(pool), type: 'dir', mode: 0o755, uid: 0, gid: 0, time: ++time }, 'c1'),
        () => ns.create({ parent: pick(dirs()), name: pick(pool), type: 'lnk', mode: 0o777, uid: 0, gid: 0, time: ++time, target: pick(pool) }, 'c1'),
        () => ns.create({ parent: pick(dirs()), name: pick(pool), type: pick(['fifo', 'sock'] as const), mode: 0o644, uid: 0, gid: 0, time: ++time }, 'c1'),
        () => ns.create({ parent: pick(dirs()), name: pick(pool), type: pick(['chr', 'blk'] as const), mode: 0o600, uid: 0, gid: 0, time: ++time, rdev: rnd(2 ** 20) }, 'c1'),
        () => ns.link({ fid: anyFid(), parent: pick(dirs()), name: pick(pool), time: ++time }),
        () => ns.unlink({ parent: pick(dirs()), name: pick(pool), dir: false, time: ++time }),
        () => ns.unlink({ parent: pick(dirs()), name: pick(pool), dir: true, time: ++time }),
        () => ns.rename({ parent: pick(dirs()), name: pick(pool), new_parent: pick(dirs()), new_name: pick(pool), time: ++time }),
        () => ns.rename({ parent: pick(dirs()), name: pick(pool), new_parent: pick(dirs()), new_name: pick(pool), time: ++time }),
        () => ns.setattr({ fid: anyFid(), mode: rnd(0o777), mtime: ++time, layout: rnd(3) === 0 ? LAYOUT : undefined }, ++time),
        () => ns.setattr({ fid: anyFid(), dir_layout: rnd(2) ? { stripe_count: 1, stripe_size: 1 << 20, stripe_offset: -1 } : null }, ++time),
        () => {
          const client = pick(clients)
          const r = ns.open({ fid: anyFid(), flags: rnd(3) }, client)
          handles.push({ h: r.handle, client })
          return r
        },
        () => {
          if (!handles.length) return ns.close('0000000000000000', 'c1')
          const { h, client } = handles.splice(rnd(handles.length), 1)[0]!
          return ns.close(h, rnd(8) ? client : 'c9')
        },
        () => ns.dropClient(pick(clients)),
        () => ns.cancelLlog(pick([...ns.llog.keys(), 1])),
      ]
      let ok = 0
      let failed = 0
      let checkpoint: { image: ReturnType<Namespace['image']>; at: number } | null = null
      for (let i = 0; i < 1500; i++) {
        const before = JSON.stringify(ns.image())
        const op = rnd(ops.length)
        const n = f.journal.length
        try {
          f.run(ops[op]!)
          ok++
        } catch (e) {
          if (!(e instanceof LpError)) throw e
          failed++
          // A refused operation has no effect at all (and journals nothing).
          expect(JSON.stringify(ns.image()), `op ${op} at step ${i} failed with ${e.code} but changed the namespace`).toBe(before)
          expect(f.journal.length).toBe(n)
        }
        if (i === 700) checkpoint = { image: ns.image(), at: f.journal.length }
      }
      expect(ok).toBeGreaterThan(300)
      expect(failed).toBeGreaterThan(100)
      const want = ns.image()
      expect(replayed(f.journal).image()).toEqual(want)
      // A checkpoint image, read back as the MDT reads its snapshot, plus the rest of the journal gives the same too.
      expect(checkpoint!.image.inodes.some((i) => i.rdev)).toBe(true)
      const fromCp = Namespace.fromImage(nsImageSchema.parse(JSON.parse(JSON.stringify(checkpoint!.image))))
      for (const r of f.journal.slice(checkpoint!.at)) fromCp.redo(JSON.parse(JSON.stringify(r.rec)) as NsRedo)
      expect(fromCp.image()).toEqual(want)
      // And the open counts came back with the opens.
      for (const ino of want.inodes) expect(fromCp.isOpen(ino.fid)).toBe(ns.isOpen(ino.fid))
      // Each directory's parent is the one whose entry names it (the root's, and a removed one's, the root).
      const allDirs = want.inodes.filter((i) => i.type === 'dir')
      const named = allDirs.map((i) => want.dirs.find(([, ents]) => ents.some(([, d]) => d.fid === i.fid))?.[0] ?? ROOT_FID)
      for (const copy of [ns, replayed(f.journal), fromCp]) expect(allDirs.map((i) => copy.attr(copy.inode(i.fid)).parent)).toEqual(named)
    })
  }
})

describe('namespace: versions (VBR)', () => {
  const mk = (parent: number, name: string, type: 'reg' | 'dir' = 'reg') =>
    ({ parent, name, type, mode: 0o644, uid: 0, gid: 0, time: 1 }) as OpArgs<'mdt_create'>

  it("an inode's version is the transno of its last change; entry changes leave a directory's alone", () => {
    const f = fresh()
    const at = <R>(transno: number, fn: () => R): R => {
      const { result, redo } = f.ns.tx(fn, { transno })
      f.journal.push(...redo)
      return result
    }
    const d = at(5, () => f.ns.create(mk(ROOT_FID, 'd', 'dir'), 'c1')).attr.fid
    expect(f.ns.inode(d).ver).toBe(5)
    const x = at(6, () => f.ns.create(mk(d, 'x'), 'c1'))
    expect(x.pre_versions).toEqual({ [x.attr.fid]: 0 })
    expect(f.ns.inode(d).ver).toBe(5)
    const set = at(7, () => f.ns.setattr({ fid: x.attr.fid, mode: 0o600 }, 1))
    expect(set.pre_versions).toEqual({ [x.attr.fid]: 6 })
    at(8, () => f.ns.link({ fid: x.attr.fid, parent: ROOT_FID, name: 'y', time: 2 }))
    const rm = at(9, () => f.ns.unlink({ parent: d, name: 'x', dir: false, time: 3, fid: x.attr.fid }))
    expect(rm.pre_versions).toEqual({ [x.attr.fid]: 8 })
    expect(f.ns.inode(x.attr.fid).ver).toBe(9)
    expect(f.ns.inode(d).ver).toBe(5)
    // Journaled with the inode: a restart has the same versions.
    expect(replayed(f.journal).inode(x.attr.fid).ver).toBe(9)
  })

  it('a replay finding other versions or another inode under the name fails with EOVERFLOW and changes nothing', () => {
    const f = fresh()
    const x = f.file(ROOT_FID, 'x')
    const other = f.file(ROOT_FID, 'other')
    const before = f.journal.length
    const image = JSON.stringify(f.ns.image())
    const replay = (expect: Record<string, number>, fn: () => unknown) => errno(() => f.ns.tx(fn, { transno: 50, replay: { expect } }))
    expect(replay({ [x]: 7 }, () => f.ns.setattr({ fid: x, mode: 0 }, 1))).toBe('EOVERFLOW')
    expect(replay({ [x]: 0 }, () => f.ns.unlink({ parent: ROOT_FID, name: 'x', dir: false, time: 1, fid: other }))).toBe('EOVERFLOW')
    expect(replay({}, () => f.ns.rename({ parent: ROOT_FID, name: 'x', new_parent: ROOT_FID, new_name: 'other', time: 1, fid: x }))).toBe('EOVERFLOW')
    expect(replay({ [other]: 0 }, () => f.ns.create(mk(ROOT_FID, 'x'), 'c1', { attr: { fid: other } }))).toBe('EOVERFLOW')
    expect(JSON.stringify(f.ns.image())).toBe(image)
    expect(f.journal.length).toBe(before)
    // The versions the original found: it goes.
    expect(replay({ [x]: 0 }, () => f.ns.setattr({ fid: x, mode: 0 }, 1))).toBe('no error')
  })
})

describe('namespace: FID ranges', () => {
  it('gives FIDs only from a committed range, asks for the next one at half, and resumes at the granted end', () => {
    const ns = Namespace.fresh(T0, 4)
    const journal: Redo[] = []
    const run = <R>(fn: () => R): R => {
      const { result, redo } = ns.tx(fn)
      journal.push(...redo)
      return result
    }
    const make = (name: string) => run(() => ns.create({ parent: ROOT_FID, name, type: 'reg', mode: 0, uid: 0, gid: 0, time: 1 }, 'c1')).attr.fid
    expect(ns.fidReady).toBe(false)
    expect(errno(() => make('a'))).toBe('EAGAIN')
    expect(ns.wantsRange).toBe(true)
    run(() => ns.grantRange())
    expect(ns.wantsRange).toBe(false) // one grant on its way at a time
    expect(ns.fidReady).toBe(false) // not before it is committed
    ns.rangeCommitted(ROOT_FID + 1 + 4)
    expect([make('a'), make('b')]).toEqual([2, 3])
    expect(ns.wantsRange).toBe(false)
    expect(make('c')).toBe(4)
    expect(ns.wantsRange).toBe(true)
    expect(make('d')).toBe(5)
    expect(ns.fidReady).toBe(false)
    run(() => ns.grantRange())
    ns.rangeCommitted(10)
    expect(make('e')).toBe(6)
    // A restart (image or journal) resumes at the end granted, whatever was given below it.
    expect(Namespace.fromImage(ns.image(), 4).fidReady).toBe(false)
    const again = Namespace.fresh(T0, 4)
    for (const r of journal) again.redo(r.rec as unknown as NsRedo)
    again.tx(() => again.grantRange())
    again.rangeCommitted(14)
    expect(again.tx(() => again.create({ parent: ROOT_FID, name: 'n', type: 'reg', mode: 0, uid: 0, gid: 0, time: 1 }, 'c1')).result.attr.fid).toBe(10)
    // A replay may force only a FID of a committed range.
    expect(errno(() => again.tx(() => again.create({ parent: ROOT_FID, name: 'r', type: 'reg', mode: 0, uid: 0, gid: 0, time: 1 }, 'c1', { attr: { fid: 99 } })))).toBe('EPROTO')
  })
})

describe('namespace: special files (issue 20)', () => {
  const special = (f: ReturnType<typeof fresh>, parent: number, name: string, type: 'fifo' | 'chr' | 'blk' | 'sock', rdev?: number) =>
    f.run(() => f.ns.create({ parent, name, type, mode: 0o640, uid: 1, gid: 2, time: 7, ...(rdev === undefined ? {} : { rdev }) }, 'c1'))

  it('keeps FIFOs, devices and sockets as inodes with their type and device number, and no layout', () => {
    const f = fresh()
    const fifo = special(f, ROOT_FID, 'p', 'fifo').attr
    const chr = special(f, ROOT_FID, 'c', 'chr', 0x103).attr
    const blk = special(f, ROOT_FID, 'b', 'blk', 0x700).attr
    const sock = special(f, ROOT_FID, 's', 'sock').attr
    expect(fifo).toMatchObject({ type: 'fifo', mode: 0o640, uid: 1, gid: 2, nlink: 1, size: 0 })
    expect(fifo.rdev).toBeUndefined()
    expect(chr).toMatchObject({ type: 'chr', rdev: 0x103 })
    expect(blk).toMatchObject({ type: 'blk', rdev: 0x700 })
    expect(sock).toMatchObject({ type: 'sock' })
    for (const a of [fifo, chr, blk, sock]) expect(a.layout).toBeUndefined()
    expect(f.ns.readdir(ROOT_FID, 0, 10).entries.map((e) => [e.name, e.type])).toEqual([['p', 'fifo'], ['c', 'chr'], ['b', 'blk'], ['s', 'sock']])
    // A device made without a number is device 0, as mknod(2) with dev 0 makes.
    expect(special(f, ROOT_FID, 'c0', 'chr').attr.rdev).toBe(0)
    // A restart rebuilds them from the journal, device numbers included.
    expect(replayed(f.journal).attr(replayed(f.journal).lookup(ROOT_FID, 'c'))).toEqual(f.ns.attr(f.ns.inode(chr.fid)))
  })

  it('refuses a device number on anything but a device, and a layout or an open on a special file', () => {
    const f = fresh()
    expect(errno(() => special(f, ROOT_FID, 'p', 'fifo', 5))).toBe('EINVAL')
    expect(errno(() => f.run(() => f.ns.create({ parent: ROOT_FID, name: 'r', type: 'reg', mode: 0o644, uid: 0, gid: 0, time: 1, rdev: 5 }, 'c1')))).toBe('EINVAL')
    expect(errno(() => f.run(() => f.ns.create({ parent: ROOT_FID, name: 's', type: 'sock', mode: 0o644, uid: 0, gid: 0, time: 1, layout: LAYOUT }, 'c1')))).toBe('EINVAL')
    expect(errno(() => f.run(() => f.ns.create({ parent: ROOT_FID, name: 'q', type: 'fifo', mode: 0o644, uid: 0, gid: 0, time: 1, open_flags: 0 }, 'c1')))).toBe('EINVAL')
    expect(f.names(ROOT_FID)).toEqual([])
  })

  it('links, renames, changes and removes them like files; ctime moves with each change of the inode', () => {
    const f = fresh()
    const d = f.mkdir(ROOT_FID, 'd')
    const fid = special(f, ROOT_FID, 'p', 'fifo').attr.fid
    const linked = f.link(fid, d, 'q').attr
    expect(linked).toMatchObject({ type: 'fifo', nlink: 2 })
    const c1 = linked.ctime
    f.rename(d, 'q', ROOT_FID, 'r')
    const c2 = f.ns.inode(fid).ctime
    expect(c2).toBeGreaterThan(c1)
    const set = f.run(() => f.ns.setattr({ fid, mode: 0o600, uid: 9, gid: 8, ctime: c2 + 0.5 }, 0)).attr
    expect(set).toMatchObject({ type: 'fifo', mode: 0o600, uid: 9, gid: 8, ctime: c2 + 0.5 })
    expect(f.unlink(ROOT_FID, 'p')).toMatchObject({ fid, nlink: 1 })
    expect(f.ns.inode(fid).ctime).toBeGreaterThan(c2 + 0.5)
    expect(f.unlink(ROOT_FID, 'r')).toMatchObject({ fid, nlink: 0 })
    expect(errno(() => f.ns.inode(fid))).toBe('ENOENT')
    // Nothing on the OSTs to destroy.
    expect(f.ns.llog.size).toBe(0)
  })

  it('a replayed create of a device reuses its FID and keeps its number', () => {
    const f = fresh()
    const orig = special(f, ROOT_FID, 'c', 'chr', 0x501).attr
    const g = fresh()
    const r = g.run(() => g.ns.create({ parent: ROOT_FID, name: 'c', type: 'chr', mode: 0o640, uid: 1, gid: 2, time: 7, rdev: 0x501 }, 'c1', { attr: orig }))
    expect(r.attr).toEqual(orig)
  })
})

describe('namespace: link count limit (EMLINK)', () => {
  it('refuses a link past MAX_LINK, and a subdirectory in a directory at the limit, changing nothing', () => {
    const f = fresh()
    const fid = f.file(ROOT_FID, 'f')
    for (let i = 1; i < MAX_LINK; i++) f.link(fid, ROOT_FID, `l${i}`)
    expect(f.ns.inode(fid).nlink).toBe(MAX_LINK)
    expect(errno(() => f.link(fid, ROOT_FID, 'one-more'))).toBe('EMLINK')
    f.unlink(ROOT_FID, 'l1')
    expect(f.link(fid, ROOT_FID, 'one-more').attr.nlink).toBe(MAX_LINK)

    const full = f.mkdir(ROOT_FID, 'full')
    for (let i = 2; i < MAX_LINK; i++) f.mkdir(full, `d${i}`)
    expect(f.ns.inode(full).nlink).toBe(MAX_LINK)
    const count = () => f.ns.readdir(full, 0, 2 * MAX_LINK).entries.length
    const before = count()
    expect(errno(() => f.mkdir(full, 'sub'))).toBe('EMLINK')
    const outside = f.mkdir(ROOT_FID, 'outside')
    expect(errno(() => f.rename(ROOT_FID, 'outside', full, 'sub'))).toBe('EMLINK')
    // Files take no link of the directory; a directory replacing one leaves the count as it was.
    f.file(full, 'file')
    f.rename(ROOT_FID, 'outside', full, 'd2')
    expect(f.ns.lookup(full, 'd2').fid).toBe(outside)
    expect(f.ns.inode(full).nlink).toBe(MAX_LINK)
    expect(count()).toBe(before + 1)
  })
})
