import { isDeepStrictEqual } from 'node:util'
import pTimeout from 'p-timeout'
import type { Clock } from '../common/clock.js'
import type { Logger } from '../common/log.js'
import { slice, totalLength } from '../common/chunks.js'
import { LpError, isLpError } from '../protocol/errno.js'
import { nameError, targetError, type DirEntry, type DirLayout, type DirsChanged, type FileType, type Layout, type MdtAttr, type OpArgs, type OpReplies } from '../protocol/ops.js'
import type { Mdc } from '../mdc/mdc.js'
import type { Glimpse, Lov } from '../lov/lov.js'
import { MetaCache } from './cache.js'
import { OpenFile, O_ACCMODE, O_APPEND, O_EXCL, O_RDONLY, O_TRUNC, O_WRONLY } from './file.js'
import { ReadAheadBudget } from './rabudget.js'
import { ReadAhead } from './readahead.js'
import { Statahead, type StataheadTunables } from './statahead.js'
import { toStat, typeOf, type PosixStat } from './stat.js'
import { counted, LliteStats } from './stats.js'

/**
 * POSIX semantics over the MDT and the OSTs. Its calls take FIDs (the inode numbers the
 * kernel sees) and open-file descriptors, and it knows nothing of FUSE: tests drive it
 * directly, a FUSE binding adapts it, and paths.ts resolves paths for path-based callers.
 */
export const ROOT_FID = 1
/** Directory entries per mdt_readdir. */
export const READDIR_PAGE = 1000

/** Bytes of a file read with its open for reading (a file that ends within them is read whole). */
export const READ_ON_OPEN = 64 * 1024

/** What setattr changes; times are wall-clock ms. */
export interface SetAttr {
  mode?: number
  uid?: number
  gid?: number
  size?: number
  atime?: number
  mtime?: number
  /** The times set are "now" (UTIME_NOW): the MDT lets a writer who is not the owner set them. */
  timesNow?: boolean
}

/** Who a new file belongs to. */
export interface Owner {
  uid: number
  gid: number
}

/** A name the kernel passed that the MDT could not store: the errno a local filesystem gives for it. */
function checkName(name: string): void {
  const e = nameError(name)
  if (e) throw new LpError(e, e === 'ENAMETOOLONG' ? `'${name.slice(0, 32)}...' is longer than 255 bytes` : `'${name}' cannot be a name`)
}

/**
 * The access check of open(2) for a caller (owner, group or other bits; root passes). The
 * caller's supplementary groups are not known here, so they grant nothing: a refusal errs safe.
 */
function mayOpen(a: MdtAttr, who: Owner, flags: number): boolean {
  if (who.uid === 0) return true
  const acc = flags & O_ACCMODE
  const want = (acc !== O_WRONLY ? 4 : 0) | (acc !== O_RDONLY || flags & O_TRUNC ? 2 : 0)
  const bits = who.uid === a.uid ? a.mode >> 6 : who.gid === a.gid ? a.mode >> 3 : a.mode
  return (bits & want) === want
}

export interface LliteOptions {
  mdc: Mdc
  lov: Lov
  clock: Clock
  log: Logger
  attrTimeoutMs: number
  /** Owner of new files when the caller is not known (a binding that does not tell). */
  uid: number
  gid: number
  /** Bytes per read-ahead RPC (capped at the stripe size), the largest window per file, and the most held for all files. */
  readAheadChunk: number
  maxReadAheadPerFile: number
  maxReadAhead: number
  /** Statahead's tunables (Lustre's defaults when unset). */
  statahead?: StataheadTunables
}

/** A page of a listing, with the directory's attributes. */
export type DirPage = OpReplies['mdt_readdir'] & { attr: MdtAttr }

/** Every entry of a directory after `from` (0: all of them), from its pages. */
export async function wholeListing(page: (cookie: number) => Promise<OpReplies['mdt_readdir']>, from = 0): Promise<DirEntry[]> {
  const all: DirEntry[] = []
  for (let cookie: number | null = from; cookie !== null; ) {
    const p: OpReplies['mdt_readdir'] = await page(cookie)
    all.push(...p.entries)
    cookie = p.next
  }
  return all
}

export interface Statfs {
  bsize: number
  frsize: number
  blocks: number
  bfree: number
  bavail: number
  files: number
  ffree: number
  favail: number
  namemax: number
}

export class Llite {
  readonly cache: MetaCache
  readonly statahead: Statahead
  readonly stats: LliteStats
  readonly readAhead: ReadAheadBudget
  private readonly files = new Map<number, OpenFile>()
  private nextFd = 1
  private readonly dataLostListeners: Array<(fids: number[]) => void> = []
  private readonly mdc: Mdc
  private readonly lov: Lov

  constructor(private readonly o: LliteOptions) {
    this.mdc = o.mdc
    this.lov = o.lov
    this.cache = new MetaCache(o.clock, o.attrTimeoutMs)
    this.statahead = new Statahead(o.clock, o.mdc, o.lov, this.cache, o.log, o.statahead)
    this.stats = new LliteStats(o.clock)
    this.readAhead = new ReadAheadBudget(o.maxReadAhead)
  }

  private now(): number {
    return this.o.clock.wallNow()
  }

  // ---- lookups (the kernel's view: a directory FID and a name) ----

  /** The MDT attributes of a FID (cached for the attribute timeout). */
  async attr(fid: number): Promise<MdtAttr> {
    const c = this.cache.attr(fid)
    if (c) return c.attr
    const a = await this.mdc.getattr(fid)
    this.cache.setAttr(a)
    return a
  }

  /** The entry `name` of directory `parent`. */
  async lookup(parent: number, name: string): Promise<MdtAttr> {
    await this.ahead(parent, name)
    return this.lookupCached(parent, name)
  }

  /** Before a lookup looks in the cache: a name known absent fails here, and one statahead is fetching is waited for. */
  private ahead(parent: number, name: string): Promise<void> | undefined {
    checkName(name)
    if (this.cache.absent(parent, name)) throw new LpError('ENOENT', `no entry '${name}' in directory ${parent}`)
    return this.statahead.access(parent, name)
  }

  private async lookupCached(parent: number, name: string): Promise<MdtAttr> {
    const fid = this.cache.entry(parent, name)
    if (fid !== undefined) {
      const c = this.cache.attr(fid)
      if (c) return c.attr
    }
    const a = await this.mdc.lookup(parent, name)
    this.cache.setEntry(parent, name, a.fid)
    this.cache.setAttr(a, this.cache.attr(a.fid)?.glimpse)
    return a
  }

  /**
   * lookup, then stat. When the name's last known attributes are expired, the glimpse of the
   * file they name goes out with the MDT lookup, and counts if the MDT confirms the same FID
   * and layout: a stat after the attribute timeout waits for one RPC instead of two.
   */
  async lookupStat(parent: number, name: string): Promise<{ attr: MdtAttr; st: PosixStat }> {
    await this.ahead(parent, name)
    const known = this.cache.entry(parent, name)
    const guess = known !== undefined && this.cache.attr(known) ? undefined : this.cache.guess(parent, name)
    const early = guess?.layout ? this.lov.glimpse(guess.fid, guess.layout) : undefined
    // A guess proved wrong is dropped unawaited: its failure is nobody's.
    early?.catch(() => undefined)
    const attr = await this.lookupCached(parent, name)
    if (early && attr.layout && attr.fid === guess!.fid && isDeepStrictEqual(attr.layout, guess!.layout) && !this.cache.attr(attr.fid)?.glimpse) {
      this.keepGlimpse(attr.fid, attr.layout, await early)
    }
    return { attr, st: await this.statOf(attr) }
  }

  // ---- attributes ----

  @counted('getattr')
  async stat(fid: number): Promise<PosixStat> {
    return this.statOf(await this.attr(fid))
  }

  async statOf(a: MdtAttr): Promise<PosixStat> {
    if (a.type !== 'reg' || !a.layout) return toStat(a)
    let g = this.cache.attr(a.fid)?.glimpse
    if (!g) {
      g = await this.lov.glimpse(a.fid, a.layout)
      this.keepGlimpse(a.fid, a.layout, g)
    }
    // Bytes still in the write-back cache count: a writer sees its own size at once.
    const cached = this.lov.cachedSize(a.fid, a.layout)
    return toStat(a, cached > g.size ? { ...g, size: cached } : g)
  }

  /**
   * While bytes wait in the write-back cache the objects' sizes are about to change: do not
   * keep them. Nor a size that counted a lost OST's stripes as empty: it is wrong once it is back.
   */
  private keepGlimpse(fid: number, layout: Layout, g: Glimpse): void {
    if (!this.lov.cachedSize(fid, layout) && !this.lov.lost(layout)) this.cache.setGlimpse(fid, g)
  }

  /**
   * Change attributes, as one setattr(2)-style call: mode, owner, times, size. Size goes to
   * the OSTs, times to the MDT and to the objects; unset fields stay. -1 ids are unchanged.
   */
  @counted('setattr')
  async setattr(fid: number, s: SetAttr): Promise<PosixStat> {
    const a = await this.attr(fid)
    if (s.size !== undefined) await this.truncateAttr(a, s.size)
    const args: OpArgs<'mdt_setattr'> = { fid, ctime: this.now() }
    if (s.mode !== undefined) args.mode = s.mode & 0o7777
    if (s.uid !== undefined && s.uid !== 0xffffffff && s.uid !== -1) args.uid = s.uid
    if (s.gid !== undefined && s.gid !== 0xffffffff && s.gid !== -1) args.gid = s.gid
    const times = s.atime !== undefined || s.mtime !== undefined
    if (s.atime !== undefined) args.atime = s.atime
    if (s.mtime !== undefined) args.mtime = s.mtime
    if (times && s.timesNow) args.times_now = true
    // Cached writes landing later would stamp the objects with their own time: send them first.
    if (s.mtime !== undefined && a.type === 'reg' && a.layout) await this.lov.flush(fid, a.layout)
    if (Object.keys(args).length > 2 || s.size === undefined) this.cache.setAttr(await this.mdc.setattr(args))
    // The objects carry mtime too (a glimpse takes the newer): set theirs as well.
    if (s.mtime !== undefined && a.type === 'reg' && a.layout) await this.lov.setMtime(fid, a.layout, s.mtime)
    if (times) this.cache.dropAttr(fid)
    return this.stat(fid)
  }

  private async truncateAttr(a: MdtAttr, size: number): Promise<void> {
    if (a.type === 'dir') throw new LpError('EISDIR', 'cannot truncate a directory')
    if (a.type !== 'reg') throw new LpError('EINVAL', 'cannot truncate this file type')
    const t = this.now()
    const layout = await this.ensureLayout(a)
    // Cached writes must land before the punch, or they would land after it.
    await this.lov.flush(a.fid, layout)
    this.dataChanged(a.fid)
    await this.lov.truncate(a.fid, layout, size, t)
    this.cache.setAttr(await this.mdc.setattr({ fid: a.fid, mtime: t, ctime: t, times_now: true }), { size, blocks: Math.ceil(size / 512), mtime: t })
  }

  /** Files get their layout at create; one created without (by an older tool) gets it at first I/O. */
  private async ensureLayout(a: MdtAttr): Promise<Layout> {
    if (a.layout) return a.layout
    const root = await this.attr(ROOT_FID)
    const layout = this.lov.chooseLayout(root.dir_layout)
    const n = await this.mdc.setattr({ fid: a.fid, layout, ctime: this.now() })
    this.cache.setAttr(n)
    return n.layout!
  }

  @counted('truncate')
  async ftruncate(fd: number, size: number): Promise<void> {
    await this.setattr(this.file(fd).fid, { size })
  }

  async readlink(fid: number): Promise<string> {
    const a = await this.attr(fid)
    if (a.type !== 'lnk' || a.target === undefined) throw new LpError('EINVAL', `FID ${fid} is not a symlink`)
    return a.target
  }

  // ---- namespace ----

  /** Every entry of a directory. */
  readdir(fid: number): Promise<DirEntry[]> {
    return wholeListing((c) => this.listDirPage(fid, c, READDIR_PAGE))
  }

  /**
   * A directory's attributes (its parent, for '..', among them) and up to `count` of its
   * entries after `cookie` (0: from its start), each with the cookie a listing resumes after it
   * at; `next` is null at the end. The names go to the cache, and to statahead as the order a
   * listing gave them.
   */
  @counted('readdir')
  async listDirPage(fid: number, cookie: number, count: number): Promise<DirPage> {
    const attr = await this.attr(fid)
    if (attr.type !== 'dir') throw new LpError('ENOTDIR', `FID ${fid} is not a directory`)
    const page = await this.mdc.readdirPage(fid, cookie, count)
    for (const e of page.entries) this.cache.setEntry(fid, e.name, e.fid)
    this.statahead.listed(fid, page.entries, cookie === 0)
    return { attr, entries: page.entries, next: page.next }
  }

  /** Make `name` in the directory `p` (its attributes, as the caller already has them). */
  private async make(p: MdtAttr, name: string, type: FileType, mode: number, owner: Owner | undefined, extra: { target?: string; layout?: Layout; open_flags?: number; rdev?: number } = {}) {
    checkName(name)
    const parent = p.fid
    const { uid, gid } = owner ?? this.o
    // A setgid directory's group and bit are the MDT's to give (it checks the caller's groups).
    const r = await this.unsure([parent], this.mdc.create({ parent, name, type, mode: mode & 0o7777, uid, gid, time: this.now(), exclusive: true, ...extra }))
    this.cache.setEntry(parent, name, r.attr.fid)
    this.cache.setAttr(r.attr, type === 'reg' ? { size: 0, blocks: 0, mtime: r.attr.mtime } : undefined)
    if (type === 'dir') this.cache.setWhole(r.attr.fid, r.attr.change ?? 0)
    this.dirsChanged(r, (_dir, names) => names.add(name))
    return r
  }

  @counted('mkdir')
  async mkdir(parent: number, name: string, mode: number, owner?: Owner): Promise<MdtAttr> {
    return (await this.make(await this.attr(parent), name, 'dir', mode, owner)).attr
  }

  @counted('symlink')
  async symlink(target: string, parent: number, name: string, owner?: Owner): Promise<MdtAttr> {
    const e = targetError(target)
    if (e) throw new LpError(e, e === 'ENAMETOOLONG' ? 'a symlink target is at most 4095 bytes' : 'not a symlink target')
    return (await this.make(await this.attr(parent), name, 'lnk', 0o777, owner, { target })).attr
  }

  /**
   * mknod(2), the type in `mode`'s S_IFMT bits: a regular file is created (and closed); a
   * FIFO, device or socket is an inode alone, with no objects and no layout.
   */
  @counted('mknod')
  async mknod(parent: number, name: string, mode: number, rdev: number, owner?: Owner): Promise<MdtAttr> {
    const type = typeOf(mode)
    if (type === 'reg') {
      const c = await this.create(parent, name, mode, O_RDONLY | O_EXCL, owner)
      await this.release(c.fd)
      return this.attr(c.attr.fid)
    }
    if (type === 'dir' || type === 'lnk' || type === undefined) throw new LpError('EINVAL', `mknod cannot make a file of mode 0${mode.toString(8)}`)
    const dev = type === 'chr' || type === 'blk'
    return (await this.make(await this.attr(parent), name, type, mode, owner, dev ? { rdev } : {})).attr
  }

  /** Remove a name (rmdir when `dir`); returns the FID it named. */
  @counted((_parent: number, _name: string, dir?: boolean) => (dir ? 'rmdir' : 'unlink'))
  async unlink(parent: number, name: string, dir = false): Promise<number> {
    checkName(name)
    const r = await this.unsure([parent], this.onNamed(parent, name, (fid) => this.mdc.unlink(parent, name, dir, this.now(), fid)))
    this.forget(parent, name, r.fid)
    this.dirsChanged(r, (_dir, names) => names.delete(name))
    return r.fid
  }

  private forget(parent: number, name: string, fid?: number): void {
    this.cache.dropEntry(parent, name)
    if (fid !== undefined) this.cache.dropAttr(fid)
  }

  /**
   * A change of the inode `name` names, sent with its FID when the cache knows it, so that
   * the MDT never acts on another inode than the one this client saw. When the name names
   * another one now (ESTALE: another client replaced it), the change goes once more without
   * it, as a plain name-based change; `stale` drops whatever else the change assumed. Unknown,
   * no lookup first: the MDT acts on what the name names (POSIX), and its reply's FID pins a replay.
   */
  private async onNamed<T>(parent: number, name: string, change: (fid: number | undefined) => Promise<T>, stale?: () => void): Promise<T> {
    const fid = this.cache.entry(parent, name)
    if (fid === undefined) return change(undefined)
    try {
      return await change(fid)
    } catch (e) {
      if (!isLpError(e, 'ESTALE')) throw e
      this.forget(parent, name)
      stale?.()
      return change(undefined)
    }
  }

  /** A namespace change that failed (EEXIST, ENOENT, ...) may mean others changed `dirs`: their names are no longer known. */
  private async unsure<T>(dirs: number[], change: Promise<T>): Promise<T> {
    try {
      return await change
    } catch (e) {
      for (const d of dirs) this.cache.dropWhole(d)
      throw e
    }
  }

  /**
   * The MDT's reply says what the changed directories look like now: no getattr needed.
   * `edit` applies the change to the names of a directory known whole.
   */
  private dirsChanged(r: DirsChanged, edit: (dir: number, names: Set<string>) => void): void {
    r.dirs.forEach((d, i) => {
      this.cache.dirChanged(d.fid, r.was[i]!, d.change!, (names) => edit(d.fid, names))
      this.cache.setAttr(d)
    })
  }

  /** rename(2); with `noreplace` (RENAME_NOREPLACE) an existing new name fails with EEXIST. */
  @counted('rename')
  async rename(parent: number, name: string, newParent: number, newName: string, noreplace = false): Promise<void> {
    checkName(name)
    checkName(newName)
    let victim = this.cache.entry(newParent, newName)
    const r = await this.unsure(
      [parent, newParent],
      this.onNamed(
        parent,
        name,
        (fid) => this.mdc.rename(parent, name, newParent, newName, this.now(), { fid, newFid: noreplace ? undefined : victim, noreplace }),
        () => {
          this.forget(newParent, newName)
          victim = undefined
        },
      ),
    )
    // The moved inode's attributes changed (ctime; a directory's parent).
    this.forget(parent, name, r.fid)
    this.forget(newParent, newName, victim)
    this.dirsChanged(r, (dir, names) => {
      if (dir === parent) names.delete(name)
      if (dir === newParent) names.add(newName)
    })
  }

  @counted('link')
  async link(fid: number, newParent: number, newName: string): Promise<MdtAttr> {
    checkName(newName)
    const r = await this.unsure([newParent], this.mdc.link(fid, newParent, newName, this.now()))
    this.cache.setEntry(newParent, newName, r.attr.fid)
    this.cache.dropAttr(r.attr.fid)
    this.dirsChanged(r, (_dir, names) => names.add(newName))
    return r.attr
  }

  // ---- striping (lfs setstripe / getstripe) ----

  async setstripe(fid: number, dl: DirLayout | null): Promise<void> {
    const a = await this.attr(fid)
    if (a.type !== 'dir') throw new LpError('ENOTDIR', 'setstripe sets the default layout of a directory')
    this.cache.setAttr(await this.mdc.setDirLayout(fid, dl, this.now()))
  }

  async getstripe(fid: number): Promise<MdtAttr> {
    return this.mdc.getattr(fid)
  }

  // ---- open files and data ----

  private file(fd: number): OpenFile {
    const f = this.files.get(fd)
    if (!f) throw new LpError('EBADF', `no open file ${fd}`)
    return f
  }

  private register(a: MdtAttr, handle: string, flags: number): number {
    const fd = this.nextFd++
    this.files.set(fd, new OpenFile(fd, a.fid, a.layout, flags, handle, this.readAhead))
    return fd
  }

  /** Create and open a regular file, placed by the directory's (or the filesystem's) default layout. */
  @counted('create')
  async create(parent: number, name: string, mode: number, flags: number, owner?: Owner): Promise<{ fd: number; attr: MdtAttr }> {
    const p = await this.attr(parent)
    const dl = p.dir_layout ?? (await this.attr(ROOT_FID)).dir_layout
    try {
      const r = await this.make(p, name, 'reg', mode, owner, { layout: this.lov.chooseLayout(dl), open_flags: flags })
      return { fd: this.register(r.attr, r.handle!, flags), attr: r.attr }
    } catch (e) {
      if (!(e instanceof LpError && e.code === 'EEXIST') || flags & O_EXCL) throw e
      // Another client made the name since the kernel looked it up: open(2) without O_EXCL opens it.
      this.forget(parent, name)
      const a = await this.lookup(parent, name)
      if (a.type === 'dir') throw new LpError('EISDIR', `'${name}' is a directory`)
      if (a.type !== 'reg') throw e
      // The kernel checked the right to create, not to open this file: check that here, as it would have.
      if (owner && !mayOpen(a, owner, flags)) throw new LpError('EACCES', `no permission to open '${name}'`)
      const fd = await this.open(a.fid, flags)
      if (flags & O_TRUNC) await this.ftruncate(fd, 0)
      return { fd, attr: await this.attr(a.fid) }
    }
  }

  /** Open by FID (also an unlinked file still open elsewhere, reopened through /proc). */
  @counted('open')
  async open(fid: number, flags: number): Promise<number> {
    const a = await this.attr(fid)
    if (a.type === 'dir' && (flags & O_ACCMODE) !== O_RDONLY) throw new LpError('EISDIR', `FID ${a.fid} is a directory`)
    const w = this.cache.watch()
    try {
      const early = this.earlyRead(a, flags)
      const r = await this.mdc.open(a.fid, flags)
      const g = await early
      // Close-to-open: an open sees what other clients wrote before it, its size glimpsed afresh.
      const kept = g && !w.touched.has(a.fid) && !w.cleared && isDeepStrictEqual(r.attr.layout, a.layout) ? g : undefined
      this.cache.dropAttr(r.attr.fid)
      this.cache.setAttr(r.attr)
      if (kept) this.keepGlimpse(a.fid, a.layout!, kept.glimpse)
      const fd = this.register(r.attr, r.handle, flags)
      if (kept?.whole) this.file(fd).keepWhole(kept.whole)
      return fd
    } finally {
      this.cache.unwatch(w)
    }
  }

  /**
   * A reader needs the size glimpsed afresh after its open (the kernel asks for it before its
   * first read): sent with the open, it does not wait for the open's reply. Sent after the
   * open began, it sees whatever another client's close had written. Advisory: on failure the
   * size is glimpsed when asked for. Writers do not wait for it (their OST may be down).
   *
   * Its first READ_ON_OPEN bytes (at most its first stripe) are read instead, the read's reply
   * saying what a glimpse would: a file that ends within them comes back whole, and its reads
   * then wait for no RPC, as Lustre reads a small file's data with its open.
   */
  private async earlyRead(a: MdtAttr, flags: number): Promise<{ glimpse: Glimpse; whole?: Buffer[] } | undefined> {
    if (a.type !== 'reg' || !a.layout || (flags & O_ACCMODE) === O_WRONLY) return undefined
    if (this.lov.cachedSize(a.fid, a.layout) || this.lov.lost(a.layout)) return undefined
    try {
      // A file known to be larger is glimpsed: its OST would read bytes nobody may ask for.
      const known = this.cache.attr(a.fid)?.glimpse?.size
      const head = known !== undefined && known > READ_ON_OPEN ? undefined : await this.lov.readHead(a.fid, a.layout, READ_ON_OPEN)
      if (!head) return { glimpse: await this.lov.glimpse(a.fid, a.layout) }
      const size = head.glimpse.size
      return { glimpse: head.glimpse, whole: size <= totalLength(head.data) ? slice(head.data, 0, size) : undefined }
    } catch {
      return undefined
    }
  }

  /**
   * A handle on a file with a stripe on a lost OST must have every read asked of us: the
   * kernel stops at the size it cached, which counted that stripe as empty.
   */
  uncached(fd: number): boolean {
    const layout = this.files.get(fd)?.layout
    return !!layout && this.lov.lost(layout)
  }

  /** The bytes read, in pieces (as the replies brought them: joining them would be a copy). */
  @counted('read', (r: Buffer[]) => totalLength(r))
  async read(fd: number, off: number, len: number): Promise<Buffer[]> {
    const f = this.file(fd)
    const layout = f.layout
    if (!layout || len === 0) return []
    // With bytes of its own in the write-back cache the file is read directly (read-your-writes).
    // So is a file with a stripe on a lost OST: its glimpsed size counted that stripe as empty
    // (decided question 3), and only the OST read itself can tell the reader its bytes are gone.
    if (!this.lov.cachedSize(f.fid, layout) && !this.lov.lost(layout)) {
      if (f.whole) return slice(f.whole, off, off + len)
      const size = this.cache.attr(f.fid)?.glimpse?.size
      if (size !== undefined && off >= size) return []
      f.ra ??= new ReadAhead(
        (o, n) => this.readDirect(f.fid, layout, o, n),
        { chunk: Math.min(layout.stripe_size, this.o.readAheadChunk), maxWindow: this.o.maxReadAheadPerFile },
        this.readAhead,
        // Nothing is read ahead past the end of the file as glimpsed.
        () => this.cache.attr(f.fid)?.glimpse?.size ?? Infinity,
      )
      const hit = await f.ra.read(off, len)
      if (hit) return hit
    }
    return this.readDirect(f.fid, layout, off, len)
  }

  private async readDirect(fid: number, layout: Layout, off: number, len: number): Promise<Buffer[]> {
    const { data, complete } = await this.lov.read(fid, layout, off, len)
    if (complete) return data
    // Some object ended early: a hole, or the end of the file. The file size tells which.
    const size = await this.knownSize(fid, layout)
    return slice(data, 0, Math.max(0, Math.min(len, size - off)))
  }

  /** The size as this client knows it: glimpsed at open (kept for the attribute timeout), or its own cached writes. */
  private async knownSize(fid: number, layout: Layout): Promise<number> {
    let g = this.cache.attr(fid)?.glimpse
    if (!g) {
      g = await this.lov.glimpse(fid, layout)
      this.keepGlimpse(fid, layout, g)
    }
    return Math.max(g.size, this.lov.cachedSize(fid, layout))
  }

  /**
   * The import of OST `ost` was invalidated: what was read from its objects is dropped with
   * it (as Lustre discards the pages with the locks), read-ahead and glimpsed sizes alike.
   */
  objectsLost(ost: number): void {
    const on = (layout: Layout | undefined) => !!layout?.osts.includes(ost)
    const fids = new Set<number>()
    for (const f of this.files.values()) {
      if (!on(f.layout)) continue
      f.dropReadData()
      fids.add(f.fid)
    }
    this.cache.dropGlimpses((a) => on(a.layout))
    if (fids.size) for (const fn of this.dataLostListeners) fn([...fids])
  }

  /**
   * `fn` is told the FIDs of open files whose data was lost with an OST: pages cached above
   * us (the kernel's) must go too. Files not open need no telling: a new open drops them.
   */
  onDataLost(fn: (fids: number[]) => void): void {
    this.dataLostListeners.push(fn)
  }

  /** This client changed the file's data: read-ahead of any of its open files is stale. */
  private dataChanged(fid: number): void {
    for (const f of this.files.values()) if (f.fid === fid) f.dropReadData()
  }

  /** A write-back error of the file not reported yet is reported now, once. */
  private reportError(f: OpenFile): void {
    const e = f.layout && this.lov.takeError(f.fid, f.layout)
    if (e) throw e
  }

  @counted('write', (n: number) => n)
  async write(fd: number, data: Buffer, off: number): Promise<number> {
    const f = this.file(fd)
    this.reportError(f)
    this.dataChanged(f.fid)
    const layout = f.layout ?? (f.layout = await this.ensureLayout(await this.attr(f.fid)))
    let at = off
    const t = this.now()
    if (f.flags & O_APPEND) {
      // O_APPEND is resolved on the OST (decided question 11); striped files use the glimpsed size.
      if (layout.osts.length === 1) at = await this.lov.append(f.fid, layout, data, t)
      else {
        await this.lov.flush(f.fid, layout)
        at = (await this.lov.glimpse(f.fid, layout)).size
        await this.lov.write(f.fid, layout, at, data, t)
      }
    } else await this.lov.write(f.fid, layout, off, data, t)
    this.cache.grow(f.fid, at + data.length, t)
    return data.length
  }

  private async writeBack(f: OpenFile): Promise<void> {
    if (!f.layout) return
    await this.lov.flush(f.fid, f.layout)
    this.reportError(f)
  }

  /**
   * close(2) of one descriptor: write back the file's cached data and report its errors. A
   * read-only one has nothing to write back, and a write-back error is for a writer's close to
   * report (as NFS flushes only handles open for writing): the FUSE binding closes read-only
   * handles without a FLUSH at all.
   */
  async flush(fd: number): Promise<void> {
    const f = this.file(fd)
    if (f.writable) await this.writeBack(f)
  }

  /** Returns once the file's data are committed on its OSTs and (unless datasync) the MDT. */
  @counted('fsync')
  async fsync(fd: number, datasync: boolean): Promise<void> {
    const f = this.file(fd)
    await this.writeBack(f)
    if (f.layout) await this.lov.sync(f.layout)
    this.reportError(f)
    if (!datasync) await this.mdc.sync()
  }

  @counted('fsync')
  async fsyncdir(): Promise<void> {
    await this.mdc.sync()
  }

  /** The last close: the MDT forgets the open (an unlinked file goes with its last one). */
  @counted('close')
  async release(fd: number): Promise<void> {
    const f = this.file(fd)
    let failed: unknown
    if (f.writable) await this.writeBack(f).catch((e) => (failed = e))
    this.files.delete(fd)
    f.dropReadData()
    this.mdc.close(f.handle)
    if (failed) throw failed
  }

  /** Write back every open file's cached data, and send the closes waiting, waiting at most `ms` (unmount). */
  async writeBackAll(ms: number): Promise<void> {
    const all = Promise.all([...[...this.files.values()].map((f) => (f.layout ? this.lov.flush(f.fid, f.layout) : undefined)), this.mdc.flushCloses()])
    await pTimeout(all, { milliseconds: ms, message: new LpError('ETIMEDOUT', `cached data not written back within ${ms} ms`) })
  }

  /**
   * An open handle of `fid` here, a writable one first: a capability renewed with it grants
   * what the open did, whoever's request renews it (write-back runs in any caller's context).
   */
  openHandle(fid: number): string | undefined {
    let found: OpenFile | undefined
    for (const f of this.files.values()) if (f.fid === fid && (!found || (f.writable && !found.writable))) found = f
    return found?.handle
  }

  fidOf(fd: number): number {
    return this.file(fd).fid
  }

  get openCount(): number {
    return this.files.size
  }

  @counted('statfs')
  async statfs(): Promise<Statfs> {
    const [mdt, osts] = await Promise.all([this.mdc.statfs(), this.lov.statfs()])
    let bytes = 0
    let free = 0
    let avail = 0
    for (const { statfs: s } of osts) {
      if (!s) continue
      bytes += s.blocks * s.bsize
      free += s.bfree * s.bsize
      avail += s.bavail * s.bsize
    }
    // The FUSE binding carries 32-bit counts: grow the fragment size until they fit.
    let frsize = 4096
    while (bytes / frsize >= 2 ** 32) frsize *= 2
    return {
      bsize: frsize,
      frsize,
      blocks: Math.floor(bytes / frsize),
      bfree: Math.floor(free / frsize),
      bavail: Math.floor(avail / frsize),
      files: Math.min(mdt.files, 2 ** 32 - 1),
      ffree: Math.min(mdt.ffree, 2 ** 32 - 1),
      favail: Math.min(mdt.ffree, 2 ** 32 - 1),
      namemax: 255,
    }
  }
}
