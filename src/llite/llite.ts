import pTimeout from 'p-timeout'
import type { Clock } from '../common/clock.js'
import type { Logger } from '../common/log.js'
import { LpError } from '../protocol/errno.js'
import type { DirEntry, DirLayout, FileType, Layout, MdtAttr } from '../protocol/ops.js'
import type { Mdc } from '../mdc/mdc.js'
import type { Glimpse, Lov } from '../lov/lov.js'
import { MetaCache } from './cache.js'
import { OpenFile, O_ACCMODE, O_APPEND, O_RDONLY } from './file.js'
import { ReadAhead } from './readahead.js'
import { toStat, type PosixStat } from './stat.js'

/**
 * POSIX semantics over the MDT and the OSTs, driven by paths (the FUSE adapter's calls)
 * but knowing nothing of FUSE: tests drive it directly.
 */
export const ROOT_FID = 1

export interface LliteOptions {
  mdc: Mdc
  lov: Lov
  clock: Clock
  log: Logger
  attrTimeoutMs: number
  /** Owner of new files (the FUSE binding does not tell us the caller). */
  uid: number
  gid: number
  /** Bytes per read-ahead RPC (capped at the stripe size) and the largest window per file. */
  readAheadChunk: number
  maxReadAheadPerFile: number
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
  private readonly files = new Map<number, OpenFile>()
  private nextFd = 1
  private readonly mdc: Mdc
  private readonly lov: Lov

  constructor(private readonly o: LliteOptions) {
    this.mdc = o.mdc
    this.lov = o.lov
    this.cache = new MetaCache(o.clock, o.attrTimeoutMs)
  }

  private now(): number {
    return this.o.clock.wallNow()
  }

  // ---- path resolution ----

  private split(path: string): string[] {
    if (!path.startsWith('/')) throw new LpError('EINVAL', `not an absolute path: ${path}`)
    return path.split('/').filter((c) => c.length > 0)
  }

  private async attrOf(fid: number): Promise<MdtAttr> {
    const c = this.cache.attr(fid)
    if (c) return c.attr
    const a = await this.mdc.getattr(fid)
    this.cache.setAttr(a)
    return a
  }

  private async child(parent: number, name: string): Promise<MdtAttr> {
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

  /** The MDT attributes of the object at `path`. */
  async resolve(path: string): Promise<MdtAttr> {
    let cur = await this.attrOf(ROOT_FID)
    for (const name of this.split(path)) {
      if (cur.type !== 'dir') throw new LpError('ENOTDIR', `a component of ${path} is not a directory`)
      cur = await this.child(cur.fid, name)
    }
    return cur
  }

  private async parentOf(path: string): Promise<{ parent: MdtAttr; name: string }> {
    const parts = this.split(path)
    const name = parts.pop()
    if (name === undefined) throw new LpError('EBUSY', 'the root has no parent')
    const parent = await this.resolve('/' + parts.join('/'))
    if (parent.type !== 'dir') throw new LpError('ENOTDIR', `parent of ${path} is not a directory`)
    return { parent, name }
  }

  // ---- attributes ----

  async getattr(path: string): Promise<PosixStat> {
    return this.statOf(await this.resolve(path))
  }

  async getattrFid(fid: number): Promise<PosixStat> {
    return this.statOf(await this.attrOf(fid))
  }

  private async statOf(a: MdtAttr): Promise<PosixStat> {
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

  /** While bytes wait in the write-back cache the objects' sizes are about to change: do not keep them. */
  private keepGlimpse(fid: number, layout: Layout, g: Glimpse): void {
    if (!this.lov.cachedSize(fid, layout)) this.cache.setGlimpse(fid, g)
  }

  async chmod(path: string, mode: number): Promise<void> {
    const a = await this.resolve(path)
    this.cache.setAttr(await this.mdc.setattr({ fid: a.fid, mode: mode & 0o7777, ctime: this.now() }))
  }

  async chown(path: string, uid: number, gid: number): Promise<void> {
    const a = await this.resolve(path)
    // -1 (as unsigned) leaves that id unchanged.
    const args = { fid: a.fid, ctime: this.now(), ...(uid !== 0xffffffff && uid !== -1 ? { uid } : {}), ...(gid !== 0xffffffff && gid !== -1 ? { gid } : {}) }
    this.cache.setAttr(await this.mdc.setattr(args))
  }

  async utimens(path: string, atime: number, mtime: number): Promise<void> {
    const a = await this.resolve(path)
    // Cached writes landing later would stamp the objects with their own time: send them first.
    if (a.type === 'reg' && a.layout) await this.lov.flush(a.fid, a.layout)
    const n = await this.mdc.setattr({ fid: a.fid, atime, mtime, ctime: this.now() })
    // The objects carry mtime too (a glimpse takes the newer): set theirs as well.
    if (a.type === 'reg' && a.layout) await this.lov.setMtime(a.fid, a.layout, mtime)
    this.cache.dropAttr(n.fid)
  }

  async truncate(path: string, size: number): Promise<void> {
    await this.truncateAttr(await this.resolve(path), size)
  }

  async ftruncate(fd: number, size: number): Promise<void> {
    const f = this.file(fd)
    await this.truncateAttr(await this.attrOf(f.fid), size)
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
    this.cache.setAttr(await this.mdc.setattr({ fid: a.fid, mtime: t, ctime: t }), { size, blocks: Math.ceil(size / 512), mtime: t })
  }

  /** Files get their layout at create; one created without (by an older tool) gets it at first I/O. */
  private async ensureLayout(a: MdtAttr): Promise<Layout> {
    if (a.layout) return a.layout
    const root = await this.attrOf(ROOT_FID)
    const layout = this.lov.chooseLayout(root.dir_layout)
    const n = await this.mdc.setattr({ fid: a.fid, layout, ctime: this.now() })
    this.cache.setAttr(n)
    return n.layout!
  }

  // ---- namespace ----

  /** A directory's entries, with the FIDs of '.' and '..' (the binding lists those too). */
  async readdir(path: string): Promise<{ self: number; parent: number; entries: DirEntry[] }> {
    const a = await this.resolve(path)
    if (a.type !== 'dir') throw new LpError('ENOTDIR', `${path} is not a directory`)
    const parts = this.split(path)
    const parent = parts.length ? (await this.resolve('/' + parts.slice(0, -1).join('/'))).fid : a.fid
    const entries = await this.mdc.readdir(a.fid)
    for (const e of entries) this.cache.setEntry(a.fid, e.name, e.fid)
    return { self: a.fid, parent, entries }
  }

  private async make(path: string, type: FileType, mode: number, extra: { target?: string; layout?: Layout; open_flags?: number } = {}) {
    const { parent, name } = await this.parentOf(path)
    const r = await this.mdc.create({
      parent: parent.fid,
      name,
      type,
      mode: mode & 0o7777,
      uid: this.o.uid,
      gid: this.o.gid,
      time: this.now(),
      exclusive: true,
      ...extra,
    })
    this.cache.setEntry(parent.fid, name, r.attr.fid)
    this.cache.setAttr(r.attr, type === 'reg' ? { size: 0, blocks: 0, mtime: r.attr.mtime } : undefined)
    this.cache.dropAttr(parent.fid)
    return r
  }

  async mkdir(path: string, mode: number): Promise<void> {
    await this.make(path, 'dir', mode)
  }

  async symlink(target: string, path: string): Promise<void> {
    await this.make(path, 'lnk', 0o777, { target })
  }

  async readlink(path: string): Promise<string> {
    const a = await this.resolve(path)
    if (a.type !== 'lnk' || a.target === undefined) throw new LpError('EINVAL', `${path} is not a symlink`)
    return a.target
  }

  async unlink(path: string): Promise<number> {
    const { parent, name } = await this.parentOf(path)
    const r = await this.mdc.unlink(parent.fid, name, false, this.now())
    this.forget(parent.fid, name, r.fid)
    return r.fid
  }

  async rmdir(path: string): Promise<void> {
    const { parent, name } = await this.parentOf(path)
    const r = await this.mdc.unlink(parent.fid, name, true, this.now())
    this.forget(parent.fid, name, r.fid)
  }

  private forget(parent: number, name: string, fid?: number): void {
    this.cache.dropEntry(parent, name)
    this.cache.dropAttr(parent)
    if (fid !== undefined) this.cache.dropAttr(fid)
  }

  async rename(from: string, to: string): Promise<void> {
    const src = await this.parentOf(from)
    const dst = await this.parentOf(to)
    const victim = this.cache.entry(dst.parent.fid, dst.name)
    const moved = this.cache.entry(src.parent.fid, src.name)
    await this.mdc.rename(src.parent.fid, src.name, dst.parent.fid, dst.name, this.now())
    this.forget(src.parent.fid, src.name, moved)
    this.forget(dst.parent.fid, dst.name, victim)
  }

  async link(from: string, to: string): Promise<void> {
    const a = await this.resolve(from)
    const dst = await this.parentOf(to)
    const n = await this.mdc.link(a.fid, dst.parent.fid, dst.name, this.now())
    this.cache.setEntry(dst.parent.fid, dst.name, n.fid)
    this.cache.dropAttr(n.fid)
    this.cache.dropAttr(dst.parent.fid)
  }

  // ---- striping (lfs setstripe / getstripe) ----

  async setstripe(path: string, dl: DirLayout | null): Promise<void> {
    const a = await this.resolve(path)
    if (a.type !== 'dir') throw new LpError('ENOTDIR', 'setstripe sets the default layout of a directory')
    this.cache.setAttr(await this.mdc.setDirLayout(a.fid, dl, this.now()))
  }

  async getstripe(path: string): Promise<MdtAttr> {
    const a = await this.resolve(path)
    return this.mdc.getattr(a.fid)
  }

  // ---- open files and data ----

  private file(fd: number): OpenFile {
    const f = this.files.get(fd)
    if (!f) throw new LpError('EBADF', `no open file ${fd}`)
    return f
  }

  private register(a: MdtAttr, handle: string, flags: number): number {
    const fd = this.nextFd++
    this.files.set(fd, new OpenFile(fd, a.fid, a.layout, flags, handle))
    return fd
  }

  async create(path: string, mode: number, flags: number): Promise<number> {
    const { parent } = await this.parentOf(path)
    const dl = parent.dir_layout ?? (await this.attrOf(ROOT_FID)).dir_layout
    const r = await this.make(path, 'reg', mode, { layout: this.lov.chooseLayout(dl), open_flags: flags })
    return this.register(r.attr, r.handle!, flags)
  }

  async open(path: string, flags: number): Promise<number> {
    return this.openAttr(await this.resolve(path), flags)
  }

  /** Open by FID: an unlinked file that is still open elsewhere (reopened through /proc). */
  async openFid(fid: number, flags: number): Promise<number> {
    return this.openAttr(await this.attrOf(fid), flags)
  }

  private async openAttr(a: MdtAttr, flags: number): Promise<number> {
    if (a.type === 'dir' && (flags & O_ACCMODE) !== O_RDONLY) throw new LpError('EISDIR', `FID ${a.fid} is a directory`)
    const r = await this.mdc.open(a.fid, flags)
    // Close-to-open: an open sees what other clients wrote before it.
    this.cache.setAttr(r.attr)
    return this.register(r.attr, r.handle, flags)
  }

  async read(fd: number, off: number, len: number): Promise<Buffer> {
    const f = this.file(fd)
    const layout = f.layout
    if (!layout || len === 0) return Buffer.alloc(0)
    // With bytes of its own in the write-back cache the file is read directly (read-your-writes).
    if (!this.lov.cachedSize(f.fid, layout)) {
      f.ra ??= new ReadAhead((o, n) => this.readDirect(f.fid, layout, o, n), {
        chunk: Math.min(layout.stripe_size, this.o.readAheadChunk),
        maxWindow: this.o.maxReadAheadPerFile,
      })
      const hit = await f.ra.read(off, len)
      if (hit) return hit
    }
    return this.readDirect(f.fid, layout, off, len)
  }

  private async readDirect(fid: number, layout: Layout, off: number, len: number): Promise<Buffer> {
    const buf = Buffer.alloc(len)
    if (await this.lov.read(fid, layout, off, buf)) return buf
    // Some object ended early: a hole, or the end of the file. The file size tells which.
    const g = await this.lov.glimpse(fid, layout)
    this.keepGlimpse(fid, layout, g)
    const size = Math.max(g.size, this.lov.cachedSize(fid, layout))
    return buf.subarray(0, Math.max(0, Math.min(len, size - off)))
  }

  /** This client changed the file's data: read-ahead of any of its open files is stale. */
  private dataChanged(fid: number): void {
    for (const f of this.files.values()) if (f.fid === fid) f.ra?.invalidate()
  }

  /** A write-back error of the file not reported yet is reported now, once. */
  private reportError(f: OpenFile): void {
    const e = f.layout && this.lov.takeError(f.fid, f.layout)
    if (e) throw e
  }

  async write(fd: number, data: Buffer, off: number): Promise<number> {
    const f = this.file(fd)
    this.reportError(f)
    this.dataChanged(f.fid)
    const layout = f.layout ?? (f.layout = await this.ensureLayout(await this.attrOf(f.fid)))
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

  /** close(2) of one descriptor: write back the file's cached data and report its errors. */
  async flush(fd: number): Promise<void> {
    await this.writeBack(this.file(fd))
  }

  /** Returns once the file's data are committed on its OSTs and (unless datasync) the MDT. */
  async fsync(fd: number, datasync: boolean): Promise<void> {
    const f = this.file(fd)
    await this.writeBack(f)
    if (f.layout) await this.lov.sync(f.layout)
    this.reportError(f)
    if (!datasync) await this.mdc.sync()
  }

  async fsyncdir(): Promise<void> {
    await this.mdc.sync()
  }

  /** The last close: the MDT forgets the open (an unlinked file goes with its last one). */
  async release(fd: number): Promise<void> {
    const f = this.file(fd)
    let failed: unknown
    await this.writeBack(f).catch((e) => (failed = e))
    this.files.delete(fd)
    try {
      await this.mdc.close(f.handle)
    } catch (e) {
      // An eviction already dropped our opens on the MDT: nothing is left to close.
      if (!(e instanceof LpError && (e.code === 'EBADF' || e.code === 'EIO'))) throw e
    }
    if (failed) throw failed
  }

  /** Write back every open file's cached data, waiting at most `ms` (unmount). */
  async writeBackAll(ms: number): Promise<void> {
    const all = Promise.all([...this.files.values()].map((f) => (f.layout ? this.lov.flush(f.fid, f.layout) : undefined)))
    await pTimeout(all, { milliseconds: ms, message: new LpError('ETIMEDOUT', `cached data not written back within ${ms} ms`) })
  }

  fidOf(fd: number): number {
    return this.file(fd).fid
  }

  get openCount(): number {
    return this.files.size
  }

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
