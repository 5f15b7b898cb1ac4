import { z } from 'zod'
import { exactly } from '../../common/exact.js'
import { LRUCache } from 'lru-cache'
import { LpError } from '../../protocol/errno.js'
import { randomText } from '../../common/random.js'
import { FILE_TYPES, MAX_LINK, dirLayoutSchema, fidSchema, handleSchema, layoutSchema, nameSchema, type Cred, type DirEntry, type Layout, type MdtAttr, type OpArgs, type OpReplies, type PreVersions } from '../../protocol/ops.js'
import type { Redo } from '../target/backend.js'

/**
 * The metadata target's namespace, all in memory: inodes by FID, directory entries, open
 * handles, and the log of objects whose files are gone and must be destroyed on the OSTs.
 * Every operation checks everything first, then changes state through the setters below,
 * which also describe each change as a physical redo record (the same setters re-apply
 * those records when the journal is replayed at start).
 */
/** An inode is what getattr reports, plus a directory's next readdir cookie and its version. */
export interface Inode extends MdtAttr {
  next_cookie?: number
  /**
   * Version-based recovery: the transno of the inode's last change. Changes of a directory's
   * entry list leave it alone: another client's create in the same directory must not fail a replay.
   */
  ver?: number
}

/** The transaction a change runs in; `replay` when it replays one whose original found `expect`. */
export interface TxContext {
  transno: number
  replay?: { expect?: PreVersions }
}

export interface Dirent {
  fid: number
  /** Readdir cookie: increasing in insertion order, stable while the entry exists. */
  c: number
}

export interface OpenRec {
  client: string
  fid: number
  flags: number
}

export const ROOT_FID = 1
const DIR_SIZE = 4096

const S_ISGID = 0o2000
const S_ISUID = 0o4000
const S_ISVTX = 0o1000
const S_IXGRP = 0o010
export const MAY_READ = 4
export const MAY_WRITE = 2
export const MAY_EXEC = 1
const O_ACCMODE = 3
const O_WRONLY = 1
const O_RDONLY = 0
const O_TRUNC = 0o1000

/** What open(2) with these flags needs: read and/or write by the access mode, write for O_TRUNC. */
export function openWants(flags: number): number {
  const acc = flags & O_ACCMODE
  return (acc !== O_WRONLY ? MAY_READ : 0) | (acc !== O_RDONLY || flags & O_TRUNC ? MAY_WRITE : 0)
}

/** A request without an identity is root's (root_squash, applied before, may have made it another). */
export const ROOT_CRED: Cred = { uid: 0, gid: 0, groups: [] }

function inGroup(who: Cred, gid: number): boolean {
  return who.gid === gid || who.groups.includes(gid)
}

/** POSIX access: the owner's, group's or others' bits; root passes all but a file's exec. */
export function permits(i: Pick<Inode, 'mode' | 'uid' | 'gid' | 'type'>, who: Cred, want: number): boolean {
  if (who.uid === 0) return !(want & MAY_EXEC) || i.type === 'dir' || (i.mode & 0o111) !== 0
  const bits = who.uid === i.uid ? i.mode >> 6 : inGroup(who, i.gid) ? i.mode >> 3 : i.mode
  return (bits & want & 7) === want
}

const WANTS = ['', 'search', 'write', 'write and search', 'read', 'read and search', 'read and write', 'read, write and search']

export type NsRedo =
  | { k: 'ino'; fid: number; v: Inode | null }
  | { k: 'de'; dir: number; name: string; v: Dirent | null }
  | { k: 'open'; h: string; v: OpenRec | null }
  | { k: 'llog'; fid: number; v: Layout | null }
  | { k: 'fidend'; v: number }
  /** Before FID ranges: the next FID after a committed create (journals written before them). */
  | { k: 'fidnext'; v: number }

export interface NsImage {
  inodes: Inode[]
  dirs: Array<[number, Array<[string, Dirent]>]>
  opens: Array<[string, OpenRec]>
  llog: Array<[number, Layout]>
  /** The end of the last FID range granted; `fidNext` in images made before FID ranges. */
  fidEnd?: number
  fidNext?: number
}

/** Open handles one client may hold on the MDT (a client that never closes would grow them without end). */
export const MAX_OPENS_PER_CLIENT = 65536

const u = z.number().int().min(0)
const inodeSchema = exactly<Inode>()(
  z.object({
    fid: fidSchema,
    type: z.enum(FILE_TYPES),
    mode: u.max(0o7777),
    uid: u.max(0xffffffff),
    gid: u.max(0xffffffff),
    nlink: u,
    atime: z.number().finite(),
    mtime: z.number().finite(),
    ctime: z.number().finite(),
    size: u,
    layout: layoutSchema.optional(),
    dir_layout: dirLayoutSchema.optional(),
    target: z.string().optional(),
    rdev: u.max(0xffffffff).optional(),
    change: u.optional(),
    parent: fidSchema.optional(),
    next_cookie: u.optional(),
    ver: u.optional(),
  }),
)

/** A namespace image as the MDT reads it back from its snapshot. */
export const nsImageSchema = exactly<NsImage>()(
  z.object({
    inodes: z.array(inodeSchema),
    dirs: z.array(z.tuple([fidSchema, z.array(z.tuple([nameSchema, z.object({ fid: fidSchema, c: u })]))])),
    opens: z.array(z.tuple([handleSchema, z.object({ client: z.string().min(1).max(128), fid: fidSchema, flags: u.max(0xffffffff) })])),
    llog: z.array(z.tuple([fidSchema, layoutSchema])),
    fidEnd: u.optional(),
    fidNext: u.optional(),
  }),
)

/**
 * A listing under way: the iterator its last page stopped in, and the entry it read past the
 * page. A directory's entries iterate in cookie order (a name is always appended with the next
 * cookie), and a live iterator sees later additions and removals, so the next page resumes
 * here instead of walking the directory from its start.
 */
interface Cursor {
  dir: Map<string, Dirent>
  it: MapIterator<[string, Dirent]>
  pending: [string, Dirent]
}

/** Listings resumable at once, the latest kept (a page past them walks from the start). */
const MAX_CURSORS = 256

/** FIDs per range the MDT grants itself (Lustre's sequence width is 0x20000). */
export const FID_RANGE = 0x10000
const FID_LIMIT = 0x100000000

export class Namespace {
  private inodes = new Map<number, Inode>()
  private dirs = new Map<number, Map<string, Dirent>>()
  private opens = new Map<string, OpenRec>()
  private openCount = new Map<number, number>()
  private clientOpens = new Map<string, number>()
  maxOpensPerClient = MAX_OPENS_PER_CLIENT
  /** Each directory's parent, derived from the entries (a directory has one name): '..' and rename's loop check. */
  private parents = new Map<number, number>()
  private readonly cursors = new LRUCache<string, Cursor>({ max: MAX_CURSORS })
  readonly llog = new Map<number, Layout>()
  /**
   * FIDs come from ranges (Lustre's sequence controller): `fidEnd` is the end of the last one
   * granted (journaled), `fidUsable` of the last one committed. A FID is given only below
   * `fidUsable`, and a restart resumes at `fidEnd`: a create lost with an uncommitted tail can
   * never have its FID given to another file.
   */
  private fidEnd = ROOT_FID + 1
  private fidUsable = ROOT_FID + 1
  private fidNext = ROOT_FID + 1
  private out: Redo[] | null = null
  private txc: TxContext = { transno: 0 }

  constructor(private readonly fidRange = FID_RANGE) {}

  static fresh(now: number, fidRange?: number): Namespace {
    const ns = new Namespace(fidRange)
    ns.setInode({ fid: ROOT_FID, type: 'dir', mode: 0o755, uid: 0, gid: 0, nlink: 2, atime: now, mtime: now, ctime: now, size: DIR_SIZE, next_cookie: 1 })
    return ns
  }

  static fromImage(img: NsImage, fidRange?: number): Namespace {
    const ns = new Namespace(fidRange)
    for (const i of img.inodes) ns.inodes.set(i.fid, i)
    for (const [fid, ents] of img.dirs) {
      ns.dirs.set(fid, new Map(ents))
      for (const [, d] of ents) ns.placed(d.fid, fid)
    }
    for (const [h, o] of img.opens) ns.setOpen(h, o)
    for (const [fid, l] of img.llog) ns.llog.set(fid, l)
    ns.resumeAt(img.fidEnd ?? img.fidNext ?? ROOT_FID + 1)
    return ns
  }

  image(): NsImage {
    return {
      inodes: [...this.inodes.values()].map((i) => ({ ...i })),
      dirs: [...this.dirs].map(([fid, m]) => [fid, [...m].map(([n, d]) => [n, { ...d }] as [string, Dirent])]),
      opens: [...this.opens].map(([h, o]) => [h, { ...o }]),
      llog: [...this.llog],
      fidEnd: this.fidEnd,
    }
  }

  get inodeCount(): number {
    return this.inodes.size
  }

  // ---- primitive setters: the only code that changes state; each emits its redo ----

  private emit(r: NsRedo): void {
    this.out?.push({ rec: r as unknown as Record<string, unknown> })
  }

  private setInode(i: Inode): void {
    this.inodes.set(i.fid, i)
    if (i.type === 'dir' && !this.dirs.has(i.fid)) this.dirs.set(i.fid, new Map())
    this.emit({ k: 'ino', fid: i.fid, v: { ...i } })
  }

  private delInode(fid: number): void {
    this.inodes.delete(fid)
    this.dirs.delete(fid)
    this.parents.delete(fid)
    this.emit({ k: 'ino', fid, v: null })
  }

  private setDirent(dir: number, name: string, v: Dirent | null): void {
    const m = this.dirs.get(dir)!
    const old = m.get(name)
    if (old && this.parents.get(old.fid) === dir) this.parents.delete(old.fid)
    if (v) {
      m.set(name, v)
      this.placed(v.fid, dir)
    } else m.delete(name)
    this.emit({ k: 'de', dir, name, v })
  }

  private placed(fid: number, dir: number): void {
    if (this.inodes.get(fid)?.type === 'dir') this.parents.set(fid, dir)
  }

  private setOpen(h: string, v: OpenRec | null): void {
    const old = this.opens.get(h)
    if (old) {
      this.openCount.set(old.fid, (this.openCount.get(old.fid) ?? 1) - 1)
      const n = (this.clientOpens.get(old.client) ?? 1) - 1
      if (n) this.clientOpens.set(old.client, n)
      else this.clientOpens.delete(old.client)
    }
    if (v) {
      this.opens.set(h, v)
      this.openCount.set(v.fid, (this.openCount.get(v.fid) ?? 0) + 1)
      this.clientOpens.set(v.client, (this.clientOpens.get(v.client) ?? 0) + 1)
    } else this.opens.delete(h)
    this.emit({ k: 'open', h, v })
  }

  private setLlog(fid: number, v: Layout | null): void {
    if (v) this.llog.set(fid, v)
    else this.llog.delete(fid)
    this.emit({ k: 'llog', fid, v })
  }

  private setFidEnd(v: number): void {
    this.fidEnd = v
    this.emit({ k: 'fidend', v })
  }

  /** Every FID below `end` may have been given: allocation goes on from there. */
  private resumeAt(end: number): void {
    this.fidEnd = this.fidUsable = this.fidNext = Math.max(this.fidEnd, end)
  }

  /** Re-apply a committed record (journal replay at start). */
  redo(r: NsRedo): void {
    switch (r.k) {
      case 'ino':
        if (r.v) this.setInode(r.v)
        else this.delInode(r.fid)
        return
      case 'de':
        if (!this.dirs.has(r.dir)) this.dirs.set(r.dir, new Map())
        this.setDirent(r.dir, r.name, r.v)
        return
      case 'open':
        this.setOpen(r.h, r.v)
        return
      case 'llog':
        this.setLlog(r.fid, r.v)
        return
      case 'fidend':
      case 'fidnext':
        this.resumeAt(r.v)
    }
  }

  /** Run `fn` collecting the redo of every change it makes (in transaction `txc`, for versions). */
  tx<T>(fn: () => T, txc: TxContext = { transno: 0 }): { result: T; redo: Redo[] } {
    const redo: Redo[] = []
    this.out = redo
    this.txc = txc
    try {
      return { result: fn(), redo }
    } finally {
      this.out = null
      this.txc = { transno: 0 }
    }
  }

  // ---- FID ranges ----

  /** Grant the next range (its redo goes in the target's own transaction). */
  grantRange(): void {
    this.setFidEnd(Math.min(FID_LIMIT, this.fidEnd + this.fidRange))
  }

  /** The range ending at `end` is durable: its FIDs may be given. */
  rangeCommitted(end: number): void {
    this.fidUsable = Math.max(this.fidUsable, end)
  }

  /** Less than half the committed range is left and no grant is on its way: time for the next. */
  get wantsRange(): boolean {
    return this.fidEnd === this.fidUsable && this.fidEnd < FID_LIMIT && this.fidUsable - this.fidNext < this.fidRange / 2
  }

  /** A create may take a new FID now (or the FID space is spent, and it fails). */
  get fidReady(): boolean {
    return this.fidNext < this.fidUsable || this.fidNext >= FID_LIMIT
  }

  // ---- versions (VBR) ----

  private verOf(fid: number): number {
    return this.inodes.get(fid)?.ver ?? 0
  }

  /**
   * A change found `pre` on the inodes it is about to modify. A replay must find what its
   * original found, else it would build on a different past: EOVERFLOW, nothing changed.
   */
  private found(pre: PreVersions): PreVersions {
    const want = this.txc.replay?.expect
    if (!want) return pre
    for (const k of new Set([...Object.keys(want), ...Object.keys(pre)])) {
      const expects = Object.hasOwn(want, k) ? want[k] : undefined
      const has = Object.hasOwn(pre, k) ? pre[k] : undefined
      if (expects !== has)
        throw new LpError('EOVERFLOW', `version mismatch on FID ${k}: replay expects ${expects ?? 'not to change it'}, object has ${has ?? this.verOf(Number(k))}`)
    }
    return pre
  }

  /** `name` in `dir` no longer names `fid`, the inode the request acts on: never act on another one. */
  private moved(dir: number, name: string, fid: number, now: number | undefined): LpError {
    const what = now === undefined ? 'no longer exists' : `now names FID ${now}`
    if (this.txc.replay) return new LpError('EOVERFLOW', `version mismatch on '${name}' in directory ${dir}: replay expects FID ${fid}, the name ${what}`)
    return new LpError(now === undefined ? 'ENOENT' : 'ESTALE', `'${name}' in directory ${dir} ${what}, not FID ${fid}`)
  }

  /** The inode `name` in `parent` names, which must be `fid` when the request says which. */
  private named(parent: number, name: string, fid: number | undefined): Inode {
    if (fid !== undefined) {
      const d = this.dir(parent).get(name)
      if (d?.fid !== fid) throw this.moved(parent, name, fid, d?.fid)
    }
    return this.lookup(parent, name)
  }

  /** The inode after a change by this transaction. */
  private changed(i: Inode): Inode {
    return { ...i, ver: this.txc.transno }
  }

  // ---- lookups ----

  attr(i: Inode): MdtAttr {
    const a: MdtAttr = {
      fid: i.fid,
      type: i.type,
      mode: i.mode,
      uid: i.uid,
      gid: i.gid,
      nlink: i.nlink,
      atime: i.atime,
      mtime: i.mtime,
      ctime: i.ctime,
      size: i.size,
    }
    if (i.layout) a.layout = i.layout
    if (i.dir_layout) a.dir_layout = i.dir_layout
    if (i.target !== undefined) a.target = i.target
    if (i.rdev !== undefined) a.rdev = i.rdev
    if (i.type === 'dir') {
      a.change = i.change ?? 0
      a.parent = this.parentOf(i.fid) ?? ROOT_FID
    }
    return a
  }

  /** A directory's change counter (0 for one that never changed, or none at all). */
  changeOf(fid: number): number {
    return this.inodes.get(fid)?.change ?? 0
  }

  /** A file's layout, if the FID is a live (or open-unlinked) file that has one: orphan cleanup and lfsck. */
  layoutOf(fid: number): Layout | undefined {
    return this.inodes.get(fid)?.layout
  }

  /** Every file with a layout, for lfsck. */
  *layouts(): Generator<[number, Layout]> {
    for (const i of this.inodes.values()) if (i.layout) yield [i.fid, i.layout]
  }

  inode(fid: number): Inode {
    const i = this.inodes.get(fid)
    if (!i) throw new LpError('ENOENT', `no object with FID ${fid}`)
    return i
  }

  private dir(fid: number): Map<string, Dirent> {
    const i = this.inode(fid)
    if (i.type !== 'dir') throw new LpError('ENOTDIR', `FID ${fid} is not a directory`)
    return this.dirs.get(fid)!
  }

  /** A directory that may take new entries: a removed one, kept while open, may not. */
  private liveDir(fid: number): Map<string, Dirent> {
    const d = this.dir(fid)
    if (this.inode(fid).nlink === 0) throw new LpError('ENOENT', `directory ${fid} was removed`)
    return d
  }

  lookup(parent: number, name: string): Inode {
    const d = this.dir(parent).get(name)
    if (!d) throw new LpError('ENOENT', `no entry '${name}' in directory ${parent}`)
    return this.inode(d.fid)
  }

  /** Each name's inode, null where the directory has none (statahead's batch). */
  lookupMany(parent: number, names: string[]): Array<Inode | null> {
    const d = this.dir(parent)
    return names.map((n) => {
      const e = d.get(n)
      return e ? (this.inodes.get(e.fid) ?? null) : null
    })
  }

  /** Up to `count` entries after `cookie`, each with its own cookie; `next`: where the following page starts (null: none). */
  readdir(fid: number, cookie: number, count: number): OpReplies['mdt_readdir'] {
    const dir = this.dir(fid)
    const key = `${fid}/${cookie}`
    const saved = this.cursors.peek(key)
    this.cursors.delete(key)
    const resumed = saved?.dir === dir ? saved : undefined
    const it = resumed?.it ?? dir.entries()
    let pending = resumed?.pending
    const entries: DirEntry[] = []
    let last = cookie
    for (;;) {
      const e = pending ?? it.next().value
      pending = undefined
      if (!e) return { entries, next: null }
      const [name, d] = e
      // Before the cookie, or the entry a page read past and that went since.
      if (d.c <= cookie || dir.get(name) !== d) continue
      if (entries.length === count) {
        this.cursors.set(`${fid}/${last}`, { dir, it, pending: e })
        return { entries, next: last }
      }
      const i = this.inodes.get(d.fid)
      if (!i) continue
      entries.push({ name, fid: d.fid, type: i.type, cookie: d.c })
      last = d.c
    }
  }

  isOpen(fid: number): boolean {
    return (this.openCount.get(fid) ?? 0) > 0
  }

  // ---- permissions (checked before anything changes) ----

  /** EACCES unless `who` has `want` on `i`. */
  private need(i: Inode, who: Cred, want: number, what: string): void {
    if (!permits(i, who, want)) throw new LpError('EACCES', `uid ${who.uid} may not ${what}: no ${WANTS[want]} permission on FID ${i.fid}`)
  }

  /** Search (x) on the directory a name is resolved in; throws ENOENT/ENOTDIR as a lookup would. */
  search(who: Cred | undefined, dir: number): void {
    const d = this.inode(dir)
    if (d.type !== 'dir') throw new LpError('ENOTDIR', `FID ${dir} is not a directory`)
    this.need(d, who ?? ROOT_CRED, MAY_EXEC, `look up names in directory ${dir}`)
  }

  /** Read (r) on a directory whose entries are listed. */
  mayList(who: Cred | undefined, dir: number): void {
    this.need(this.inode(dir), who ?? ROOT_CRED, MAY_READ, `list directory ${dir}`)
  }

  /** Write and search on a directory that gains or loses an entry. */
  private mayChangeDir(dir: Inode, who: Cred): void {
    this.need(dir, who, MAY_WRITE | MAY_EXEC, `change entries of directory ${dir.fid}`)
  }

  /** Removing (or renaming away) `victim` from `dir`: write and search, and the sticky bit's rule. */
  private mayDelete(dir: Inode, victim: Inode, who: Cred): void {
    this.mayChangeDir(dir, who)
    if (dir.mode & S_ISVTX && who.uid !== 0 && who.uid !== victim.uid && who.uid !== dir.uid)
      throw new LpError('EPERM', `uid ${who.uid} may not remove FID ${victim.fid} from sticky directory ${dir.fid}: it owns neither`)
  }

  /** open(2)'s access check. */
  private mayOpen(i: Inode, who: Cred, flags: number): void {
    const want = openWants(flags)
    if (want) this.need(i, who, want, 'open it so')
  }

  private owns(i: Inode, who: Cred): boolean {
    return who.uid === 0 || who.uid === i.uid
  }

  /** chmod, chown, utimes, layouts: who may change what (the kernel's setattr_prepare). */
  private maySetattr(i: Inode, a: OpArgs<'mdt_setattr'>, who: Cred): void {
    const deny = (what: string) => new LpError('EPERM', `uid ${who.uid} may not ${what} of FID ${i.fid}`)
    if (a.uid !== undefined && a.uid !== i.uid && who.uid !== 0) throw deny('change the owner')
    if (a.gid !== undefined && a.gid !== i.gid && !(who.uid === 0 || (who.uid === i.uid && inGroup(who, a.gid))))
      throw deny(who.uid === i.uid ? `give group ${a.gid} (not one of its groups)` : 'change the group')
    // A write by another user drops the setuid/setgid bits (the kernel's file_remove_privs): that much a writer may do.
    const dropsPrivs = a.mode !== undefined && a.mode === (i.mode & ~(S_ISUID | S_ISGID)) && a.mode !== i.mode && permits(i, who, MAY_WRITE)
    if (a.mode !== undefined && !this.owns(i, who) && !dropsPrivs) throw deny('change the mode')
    if (a.dir_layout !== undefined && !this.owns(i, who)) throw deny('set the default layout')
    if (a.atime !== undefined || a.mtime !== undefined) {
      if (a.times_now) {
        if (!this.owns(i, who)) this.need(i, who, MAY_WRITE, 'set its times to now')
      } else if (!this.owns(i, who)) throw deny('set the times')
    }
    if (a.layout && !i.layout && !this.owns(i, who)) this.need(i, who, MAY_WRITE, 'give it a layout')
  }

  // ---- modifications ----

  private addEntry(parent: Inode, name: string, fid: number): void {
    const c = parent.next_cookie ?? 1
    this.setDirent(parent.fid, name, { fid, c })
    parent.next_cookie = c + 1
  }

  /** A directory's entries changed. */
  private touch(i: Inode, time: number, nlinkDelta = 0): void {
    this.setInode({ ...i, mtime: time, ctime: time, nlink: i.nlink + nlinkDelta, change: (i.change ?? 0) + 1 })
  }

  private allocFid(forced?: number): number {
    if (forced !== undefined) {
      if (this.inodes.has(forced)) throw new LpError('EEXIST', `FID ${forced} is in use`)
      // A replay's FID came from a committed range; any other was never given.
      if (forced >= this.fidUsable) throw new LpError('EPROTO', `FID ${forced} was never granted`)
      this.fidNext = Math.max(this.fidNext, forced + 1)
      return forced
    }
    const fid = this.fidNext
    if (fid >= FID_LIMIT) throw new LpError('ENOSPC', 'FID space exhausted')
    if (fid >= this.fidUsable) throw new LpError('EAGAIN', 'no committed FID range')
    this.fidNext = fid + 1
    return fid
  }

  /** Checked before an open changes anything. A replay rebuilds opens the client held before: the cap stops only new ones. */
  private mayOpenMore(client: string, forced: string | undefined): void {
    const held = this.clientOpens.get(client) ?? 0
    if (forced === undefined && held >= this.maxOpensPerClient)
      throw new LpError('EMFILE', `client ${client} holds ${held} open files on the MDT, the most one client may`)
  }

  private openHandle(fid: number, client: string, flags: number, forced?: string): string {
    const h = forced ?? randomText(8, 'hex')
    this.setOpen(h, { client, fid, flags })
    return h
  }

  create(a: OpArgs<'mdt_create'>, client: string, replay?: { attr?: { fid: number }; handle?: string }): { attr: MdtAttr; handle?: string; pre_versions: PreVersions } {
    const who = a.cred ?? ROOT_CRED
    this.search(who, a.parent)
    const parent = this.inode(a.parent)
    const entries = this.liveDir(a.parent)
    const existing = entries.get(a.name)
    const forced = replay?.attr?.fid
    if (a.open_flags !== undefined) this.mayOpenMore(client, replay?.handle)
    if (existing) {
      if (forced !== undefined && this.txc.replay && existing.fid !== forced) throw this.moved(a.parent, a.name, forced, existing.fid)
      const i = this.inode(existing.fid)
      // open(O_CREAT) without O_EXCL of an existing regular file opens it.
      if (a.open_flags === undefined || a.exclusive || a.type !== 'reg') throw new LpError('EEXIST', `'${a.name}' exists`)
      if (i.type === 'dir') throw new LpError('EISDIR', `'${a.name}' is a directory`)
      if (replay?.handle && this.opens.has(replay.handle)) throw new LpError('EEXIST', 'open handle in use')
      this.mayOpen(i, who, a.open_flags)
      const pre_versions = this.found({})
      return { attr: this.attr(i), handle: this.openHandle(i.fid, client, a.open_flags, replay?.handle), pre_versions }
    }
    if (a.type === 'lnk' && !a.target) throw new LpError('EINVAL', 'a symlink needs a target')
    if (a.type !== 'lnk' && a.target !== undefined) throw new LpError('EINVAL', 'only a symlink has a target')
    if (a.type !== 'reg' && (a.layout || a.open_flags !== undefined)) throw new LpError('EINVAL', 'only a regular file has a layout or is opened')
    if (a.rdev !== undefined && a.type !== 'chr' && a.type !== 'blk') throw new LpError('EINVAL', 'only a device has a device number')
    if (a.type === 'dir') this.linkable(parent)
    this.mayChangeDir(parent, who)
    const { gid, mode } = this.newOwnership(parent, a, who)
    if (forced !== undefined) {
      this.found({ [forced]: this.verOf(forced) })
      if (this.inodes.has(forced)) throw new LpError('EEXIST', `FID ${forced} is in use`)
    }
    const fid = this.allocFid(forced)
    const t = a.time
    const inode: Inode = {
      ver: this.txc.transno,
      fid,
      type: a.type,
      mode,
      uid: a.uid,
      gid,
      nlink: a.type === 'dir' ? 2 : 1,
      atime: t,
      mtime: t,
      ctime: t,
      size: a.type === 'dir' ? DIR_SIZE : a.type === 'lnk' ? Buffer.byteLength(a.target!) : 0,
    }
    if (a.type === 'dir') {
      inode.next_cookie = 1
      if (parent.dir_layout) inode.dir_layout = parent.dir_layout
    }
    if (a.target !== undefined) inode.target = a.target
    if (a.type === 'chr' || a.type === 'blk') inode.rdev = a.rdev ?? 0
    if (a.layout) inode.layout = a.layout
    this.setInode(inode)
    this.addEntry(parent, a.name, fid)
    this.touch(parent, t, a.type === 'dir' ? 1 : 0)
    const handle = a.open_flags !== undefined ? this.openHandle(fid, client, a.open_flags, replay?.handle) : undefined
    return { attr: this.attr(inode), handle, pre_versions: { [fid]: 0 } }
  }

  /**
   * Who owns a new inode: the caller (only root names another uid); the group of a setgid
   * directory, which new subdirectories inherit the bit of, else one of the caller's groups.
   * A non-member's setgid bit on a group-executable file is dropped, as Linux does.
   */
  private newOwnership(parent: Inode, a: OpArgs<'mdt_create'>, who: Cred): { gid: number; mode: number } {
    if (who.uid !== 0 && a.uid !== who.uid) throw new LpError('EPERM', `uid ${who.uid} may not create a file owned by uid ${a.uid}`)
    let mode = a.mode & 0o7777
    let gid = a.gid
    if (parent.mode & S_ISGID) {
      gid = parent.gid
      if (a.type === 'dir') mode |= S_ISGID
    } else if (who.uid !== 0 && !inGroup(who, gid)) throw new LpError('EPERM', `uid ${who.uid} may not create a file of group ${gid}, not one of its groups`)
    if (a.type !== 'dir' && (mode & (S_ISGID | S_IXGRP)) === (S_ISGID | S_IXGRP) && who.uid !== 0 && !inGroup(who, gid)) mode &= ~S_ISGID
    return { gid, mode }
  }

  setattr(a: OpArgs<'mdt_setattr'>, now: number): { attr: MdtAttr; pre_versions: PreVersions } {
    const i = this.inode(a.fid)
    const who = a.cred ?? ROOT_CRED
    this.maySetattr(i, a, who)
    if (a.layout && i.type !== 'reg') throw new LpError('EINVAL', 'only a regular file has a layout')
    if (a.layout && i.layout && JSON.stringify(a.layout) !== JSON.stringify(i.layout))
      throw new LpError('EEXIST', 'the file already has a layout')
    if (a.dir_layout !== undefined && i.type !== 'dir') throw new LpError('ENOTDIR', 'a default layout is set on a directory')
    const pre_versions = this.found({ [i.fid]: this.verOf(i.fid) })
    const n: Inode = this.changed(i)
    if (a.mode !== undefined) n.mode = a.mode & 0o7777
    // chmod g+s by a non-member of the file's group sets everything but that bit (setattr_copy).
    if (a.mode !== undefined && who.uid !== 0 && !inGroup(who, n.gid)) n.mode &= ~S_ISGID
    if (a.uid !== undefined) n.uid = a.uid
    if (a.gid !== undefined) n.gid = a.gid
    if (a.atime !== undefined) n.atime = a.atime
    if (a.mtime !== undefined) n.mtime = a.mtime
    n.ctime = a.ctime ?? now
    if (a.layout) n.layout = a.layout
    if (a.dir_layout === null) delete n.dir_layout
    else if (a.dir_layout) n.dir_layout = a.dir_layout
    this.setInode(n)
    return { attr: this.attr(n), pre_versions }
  }

  link(a: OpArgs<'mdt_link'>): { attr: MdtAttr; pre_versions: PreVersions } {
    const i = this.inode(a.fid)
    if (i.type === 'dir') throw new LpError('EPERM', 'hard links to directories are not allowed')
    if (i.nlink === 0) throw new LpError('ENOENT', 'the file was unlinked')
    const who = a.cred ?? ROOT_CRED
    this.search(who, a.parent)
    this.linkable(i)
    const parent = this.inode(a.parent)
    if (this.liveDir(a.parent).has(a.name)) throw new LpError('EEXIST', `'${a.name}' exists`)
    this.mayChangeDir(parent, who)
    const pre_versions = this.found({ [i.fid]: this.verOf(i.fid) })
    this.addEntry(parent, a.name, i.fid)
    this.touch(this.inode(a.parent), a.time)
    const n = { ...this.changed(this.inode(a.fid)), nlink: i.nlink + 1, ctime: a.time }
    this.setInode(n)
    return { attr: this.attr(n), pre_versions }
  }

  /** One more link to `i` (a name of it, or a subdirectory's '..') would pass the limit: EMLINK. */
  private linkable(i: Inode): void {
    if (i.nlink >= MAX_LINK) throw new LpError('EMLINK', `FID ${i.fid} has ${i.nlink} links, the most it may have`)
  }

  /** Check that `name` in `parent` (naming `fid`, when given) can be removed (as rmdir when `dir`); returns the victim. */
  private checkRemovable(parent: number, name: string, dir: boolean, fid: number | undefined, who: Cred): Inode {
    this.search(who, parent)
    const victim = this.named(parent, name, fid)
    this.mayDelete(this.inode(parent), victim, who)
    if (dir && victim.type !== 'dir') throw new LpError('ENOTDIR', `'${name}' is not a directory`)
    if (!dir && victim.type === 'dir') throw new LpError('EISDIR', `'${name}' is a directory`)
    if (dir && this.dirs.get(victim.fid)!.size > 0) throw new LpError('ENOTEMPTY', `directory '${name}' is not empty`)
    return victim
  }

  /** Drop one name of `victim` (already checked), destroying it when nothing holds it. */
  private removeName(parent: number, name: string, victim: Inode, time: number): number {
    this.setDirent(parent, name, null)
    const p = this.inode(parent)
    this.touch(p, time, victim.type === 'dir' ? -1 : 0)
    const nlink = victim.type === 'dir' ? 0 : victim.nlink - 1
    if (nlink === 0 && !this.isOpen(victim.fid)) this.destroy(victim)
    else this.setInode({ ...this.changed(victim), nlink, ctime: time })
    return nlink
  }

  private destroy(i: Inode): void {
    this.delInode(i.fid)
    if (i.layout) this.setLlog(i.fid, i.layout)
  }

  unlink(a: OpArgs<'mdt_unlink'>): { fid: number; nlink: number; pre_versions: PreVersions } {
    const victim = this.checkRemovable(a.parent, a.name, a.dir, a.fid, a.cred ?? ROOT_CRED)
    const pre_versions = this.found({ [victim.fid]: this.verOf(victim.fid) })
    return { fid: victim.fid, nlink: this.removeName(a.parent, a.name, victim, a.time), pre_versions }
  }

  /** Returns the FID that moved. */
  rename(a: OpArgs<'mdt_rename'>): { fid: number; pre_versions: PreVersions } {
    const who = a.cred ?? ROOT_CRED
    this.search(who, a.parent)
    this.search(who, a.new_parent)
    const src = this.named(a.parent, a.name, a.fid)
    const newParent = this.inode(a.new_parent)
    const dst = this.liveDir(a.new_parent).get(a.new_name)
    if (a.new_fid !== undefined && dst?.fid !== a.new_fid) throw this.moved(a.new_parent, a.new_name, a.new_fid, dst?.fid)
    this.mayDelete(this.inode(a.parent), src, who)
    if (dst) this.mayDelete(newParent, this.inode(dst.fid), who)
    else this.mayChangeDir(newParent, who)
    // A directory that moves elsewhere has its '..' rewritten.
    if (src.type === 'dir' && a.parent !== a.new_parent) this.need(src, who, MAY_WRITE, 'move the directory to another parent')
    if (dst && a.noreplace) throw new LpError('EEXIST', `'${a.new_name}' exists`)
    if (dst && dst.fid === src.fid) return { fid: src.fid, pre_versions: this.found({}) }
    if (src.type === 'dir') {
      // A directory may not move under itself.
      for (let p: number | undefined = a.new_parent; p !== undefined; p = this.parentOf(p))
        if (p === src.fid) throw new LpError('EINVAL', 'cannot move a directory into itself')
    }
    // A directory moving in is one more link to its new parent (its '..'), unless it replaces one.
    if (src.type === 'dir' && a.parent !== a.new_parent && !dst) this.linkable(newParent)
    let victim: Inode | undefined
    if (dst) {
      victim = this.inode(dst.fid)
      if (src.type === 'dir' && victim.type !== 'dir') throw new LpError('ENOTDIR', `'${a.new_name}' is not a directory`)
      if (src.type !== 'dir' && victim.type === 'dir') throw new LpError('EISDIR', `'${a.new_name}' is a directory`)
      if (victim.type === 'dir' && this.dirs.get(victim.fid)!.size > 0) throw new LpError('ENOTEMPTY', `directory '${a.new_name}' is not empty`)
    }
    const pre: PreVersions = { [src.fid]: this.verOf(src.fid) }
    if (victim) pre[victim.fid] = this.verOf(victim.fid)
    const pre_versions = this.found(pre)
    if (victim) this.removeName(a.new_parent, a.new_name, victim, a.time)
    this.setDirent(a.parent, a.name, null)
    const moved = src.type === 'dir' && a.parent !== a.new_parent ? 1 : 0
    this.touch(this.inode(a.parent), a.time, -moved)
    this.addEntry(this.inode(a.new_parent), a.new_name, src.fid)
    this.touch(this.inode(newParent.fid), a.time, moved)
    this.setInode({ ...this.changed(this.inode(src.fid)), ctime: a.time })
    return { fid: src.fid, pre_versions }
  }

  private parentOf(fid: number): number | undefined {
    return fid === ROOT_FID ? undefined : this.parents.get(fid)
  }

  open(a: OpArgs<'mdt_open'>, client: string, replay?: { handle?: string }): { attr: MdtAttr; handle: string } {
    const i = this.inode(a.fid)
    if (replay?.handle && this.opens.has(replay.handle)) throw new LpError('EEXIST', 'open handle in use')
    this.mayOpen(i, a.cred ?? ROOT_CRED, a.flags)
    this.mayOpenMore(client, replay?.handle)
    return { attr: this.attr(i), handle: this.openHandle(i.fid, client, a.flags, replay?.handle) }
  }

  /** An open handle's holder, file and flags, if it is open. */
  openOf(handle: string): Readonly<OpenRec> | undefined {
    return this.opens.get(handle)
  }

  close(handle: string, client: string): void {
    const o = this.opens.get(handle)
    if (!o || o.client !== client) throw new LpError('EBADF', `no open handle ${handle} for this client`)
    this.release(handle, o)
  }

  private release(handle: string, o: OpenRec): void {
    this.setOpen(handle, null)
    const i = this.inodes.get(o.fid)
    if (i && i.nlink === 0 && !this.isOpen(i.fid)) this.destroy(i)
  }

  /** Drop every open of a client that left; unlinked files it held open go. */
  dropClient(client: string): void {
    for (const [h, o] of [...this.opens]) if (o.client === client) this.release(h, o)
  }

  /** The OSTs confirmed the destroy of every object of `fid`. */
  cancelLlog(fid: number): void {
    if (this.llog.has(fid)) this.setLlog(fid, null)
  }
}
