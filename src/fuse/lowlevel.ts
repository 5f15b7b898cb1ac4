import { createRequire } from 'node:module'
import { fileURLToPath } from 'node:url'
import pTimeout from 'p-timeout'
import { LpError, errnoOf } from '../protocol/errno.js'
import type { Owner, SetAttr, Statfs } from '../llite/llite.js'
import { O_ACCMODE, O_WRONLY, writes } from '../llite/file.js'
import type { PosixStat } from '../llite/stat.js'
import type { FuseBinding, FuseFs, FuseMountOptions } from './binding.js'
import { DirListings, type Listing } from './dirs.js'
import { fuseStatus } from './errno.js'
import { MAX_BACKGROUND, tuneConnection } from './fusectl.js'
import { GroupCache, asCaller } from '../common/cred.js'

/**
 * The JavaScript side of lproxy's libfuse3 low-level binding (native/), and the only code
 * besides it that knows it. Requests arrive by inode number (the FID) with the caller's
 * uid/gid and are answered later by request id; nothing in the addon waits for an answer,
 * so a request waiting on a dead target holds no thread. An interrupted request is
 * answered EINTR at once (ARCHITECTURE.md, decided question 12) and its late result is
 * refused by the addon; an open it would have returned is released.
 */
interface Req {
  id: number
  uid: number
  gid: number
  pid: number
}

/** The fields a setattr sets (times in ms, "now" resolved), and the handle of an ftruncate. */
type NativeSetAttr = SetAttr & { fh?: number }

interface InitInfo {
  protoMajor: number
  protoMinor: number
  maxWrite: number
  maxRead: number
  maxReadahead: number
  maxBackground: number
  want: number
}

interface Handlers {
  init(info: InitInfo): void
  interrupt(id: number): void
  ended(): void
  lookup(r: Req, parent: number, name: string): void
  getattr(r: Req, ino: number): void
  setattr(r: Req, ino: number, s: NativeSetAttr): void
  readlink(r: Req, ino: number): void
  mknod(r: Req, parent: number, name: string, mode: number, rdev: number): void
  mkdir(r: Req, parent: number, name: string, mode: number): void
  unlink(r: Req, parent: number, name: string): void
  rmdir(r: Req, parent: number, name: string): void
  symlink(r: Req, parent: number, name: string, target: string): void
  rename(r: Req, parent: number, name: string, newParent: number, newName: string, flags: number): void
  link(r: Req, ino: number, newParent: number, newName: string): void
  open(r: Req, ino: number, flags: number): void
  read(r: Req, fh: number, off: number, size: number): void
  write(r: Req, fh: number, off: number, data: Buffer): void
  flush(r: Req, fh: number): void
  release(r: Req, fh: number): void
  fsync(r: Req, fh: number, datasync: number): void
  opendir(r: Req, ino: number, flags: number): void
  readdir(r: Req, ino: number, fh: number, off: number): void
  releasedir(r: Req, fh: number): void
  fsyncdir(r: Req, fh: number, datasync: number): void
  statfs(r: Req, ino: number): void
  access(r: Req, ino: number, mask: number): void
  create(r: Req, parent: number, name: string, mode: number, flags: number): void
}

/** The addon's exports. Replies return false for a request no longer pending. */
interface Addon {
  mount(mountpoint: string, options: string, config: { attrTimeout: number; entryTimeout: number; maxBackground: number }, handlers: Handlers): void
  unmount(): void
  invalidateAttr(ino: number): void
  /** Queued for a thread of the addon: dropping a page waits for a read only JavaScript answers. */
  invalidateData(ino: number): void
  replyErr(id: number, errno: number): boolean
  replyEntry(id: number, st: PosixStat): boolean
  replyCreate(id: number, st: PosixStat, fh: number, direct: boolean, noflush: boolean): boolean
  replyAttr(id: number, st: PosixStat): boolean
  replyReadlink(id: number, target: string): boolean
  replyOpen(id: number, fh: number, direct?: boolean, noflush?: boolean): boolean
  replyWrite(id: number, count: number): boolean
  /** Read data as pieces, sent with one writev (never joined). */
  replyBuf(id: number, data: Buffer[]): boolean
  replyStatfs(id: number, s: Statfs): boolean
  replyDir(id: number, names: string[], inos: number[], types: number[], offs: number[]): boolean
}

const ADDON = fileURLToPath(new URL('../../native/build/Release/lproxy_fuse.node', import.meta.url))
const EINTR = errnoOf('EINTR')
const RENAME_NOREPLACE = 1
/** Kernel read-ahead window: a few 1 MiB read requests in flight per sequential reader. */
const READ_AHEAD_KIB = 4096
/** How long mount waits for the kernel's INIT before tuning the connection regardless. */
const INIT_WAIT_MS = 10_000

const owner = (r: Req): Owner => ({ uid: r.uid, gid: r.gid })

/**
 * A write-only handle writes past the page cache: llite's write-back already buffers its
 * data, and a cached copy in the kernel costs an allocation and a copy per page (up to a
 * fifth of a sequential write's time here) for pages no one on this handle can read or map.
 * Handles that can read keep the page cache.
 */
const direct = (flags: number) => (flags & O_ACCMODE) === O_WRONLY

/** A handle that does not write has nothing to write back at close (llite's flush): its close sends no FLUSH, one round trip fewer. */
const noflush = (flags: number) => !writes(flags)

export class LowLevelFuse implements FuseBinding {
  private readonly addon: Addon
  private readonly dirs: DirListings
  private mounted = false
  /** Resolves the wait for the kernel's INIT (answered, and the reply sent) in mount(). */
  private initialised: () => void = () => undefined
  /** Seen since mount; logged at unmount (the end-to-end tests read them). */
  private readonly stats = { writes: 0, largestWrite: 0, reads: 0, largestRead: 0, flushes: 0, interrupts: 0 }
  private readonly groups = new GroupCache(() => performance.now())

  /** Throws if the addon is not built or cannot load (libfuse3 missing). */
  constructor(
    private readonly llite: FuseFs,
    private readonly o: FuseMountOptions,
  ) {
    try {
      this.addon = createRequire(import.meta.url)(ADDON) as Addon
    } catch (e) {
      const why = (e as Error).message.split('\n')[0]
      throw new Error(`the native FUSE binding cannot be loaded (${why}): scripts/bootstrap.sh builds it`)
    }
    this.dirs = new DirListings(llite)
  }

  async mount(): Promise<void> {
    const o = this.o
    // fuse_opt escapes commas with a backslash.
    const fsname = o.fsname.replace(/[\\,]/g, (c) => `\\${c}`)
    const options = [`fsname=${fsname}`, 'subtype=lproxy', 'default_permissions', 'allow_other', o.dev ? 'dev' : 'nodev', ...(o.flags ?? [])].join(',')
    // Hard links are one kernel inode here, so the kernel may cache attributes as long as llite does.
    const config = { attrTimeout: o.attrTimeoutS, entryTimeout: o.attrTimeoutS, maxBackground: MAX_BACKGROUND }
    const initialised = new Promise<void>((resolve) => (this.initialised = resolve))
    this.addon.mount(o.mountpoint, options, config, this.asCallers(this.handlers()))
    this.mounted = true
    // Data lost with an OST: a handle opened before must not re-read the kernel's old pages.
    this.llite.onDataLost((fids) => {
      if (this.mounted) for (const fid of fids) this.addon.invalidateData(fid)
    })
    // INIT lowers the kernel's read-ahead window: raise it once INIT is through, or the raise may be undone.
    await pTimeout(initialised, { milliseconds: INIT_WAIT_MS }).catch(() =>
      o.log.warn({ mountpoint: o.mountpoint }, `no FUSE INIT within ${INIT_WAIT_MS / 1000} s: tuning the connection anyway`),
    )
    await tuneConnection(o.mountpoint, o.log, READ_AHEAD_KIB)
  }

  async unmount(): Promise<void> {
    if (!this.mounted) return
    this.mounted = false
    this.addon.unmount()
    this.o.log.info(this.stats, 'FUSE session closed')
  }

  /**
   * Answer request `id` with what `fn` resolves to, or with its error. If the request was
   * answered meanwhile (interrupted), `undo` gives back what the reply would have handed over.
   */
  private answer<T>(id: number, fn: () => Promise<T>, reply: (v: T) => boolean, undo?: (v: T) => Promise<unknown>): void {
    let p: Promise<T>
    try {
      p = fn()
    } catch (e) {
      p = Promise.reject(e)
    }
    p.then(
      (v) => {
        if (!reply(v) && undo) undo(v).catch((e) => this.o.log.warn({ err: (e as Error).message }, 'releasing what an interrupted request opened failed'))
      },
      (e) => void this.addon.replyErr(id, -fuseStatus(e, this.o.log)),
    ).catch((e) => this.o.log.error({ err: (e as Error)?.stack ?? String(e) }, 'a FUSE reply failed'))
  }

  /**
   * Each request runs as the process that made it (uid, gid, and its supplementary groups
   * from /proc): the MDT checks permissions with that identity, whatever the kernel checked.
   */
  private asCallers(h: Handlers): Handlers {
    const out = { ...h } as Record<string, unknown>
    for (const [name, fn] of Object.entries(h) as Array<[string, (...args: unknown[]) => void]>) {
      if (name === 'init' || name === 'interrupt' || name === 'ended') continue
      out[name] = (r: Req, ...rest: unknown[]) => asCaller({ uid: r.uid, gid: r.gid, groups: this.groups.groups(r.pid) }, () => fn(r, ...rest))
    }
    return out as unknown as Handlers
  }

  private handlers(): Handlers {
    const a = this.addon
    const l = this.llite
    const d = this.dirs
    const log = this.o.log
    const done = (r: Req) => () => a.replyErr(r.id, 0)
    const entry = (r: Req) => (st: PosixStat) => a.replyEntry(r.id, st)
    const dir = (r: Req) => (ls: Listing) => a.replyDir(r.id, ls.names, ls.inos, ls.types, ls.offs)
    return {
      init: (info) => {
        log.info(info, 'FUSE session initialised')
        this.initialised()
      },
      interrupt: (id) => {
        if (a.replyErr(id, EINTR)) this.stats.interrupts++
      },
      ended: () => this.o.ended?.(),
      lookup: (r, parent, name) => this.answer(r.id, async () => (await l.lookupStat(parent, name)).st, entry(r)),
      getattr: (r, ino) => this.answer(r.id, () => l.stat(ino), (st) => a.replyAttr(r.id, st)),
      setattr: (r, ino, s) => this.answer(r.id, () => this.setattr(ino, s), (st) => a.replyAttr(r.id, st)),
      readlink: (r, ino) => this.answer(r.id, () => l.readlink(ino), (t) => a.replyReadlink(r.id, t)),
      mknod: (r, parent, name, mode, rdev) => this.answer(r.id, async () => l.statOf(await l.mknod(parent, name, mode, rdev, owner(r))), entry(r)),
      mkdir: (r, parent, name, mode) => this.answer(r.id, async () => l.statOf(await l.mkdir(parent, name, mode, owner(r))), entry(r)),
      unlink: (r, parent, name) => this.answer(r.id, () => l.unlink(parent, name), done(r)),
      rmdir: (r, parent, name) => this.answer(r.id, () => l.unlink(parent, name, true), done(r)),
      symlink: (r, parent, name, target) => this.answer(r.id, async () => l.statOf(await l.symlink(target, parent, name, owner(r))), entry(r)),
      rename: (r, parent, name, newParent, newName, flags) => this.answer(r.id, () => this.rename(parent, name, newParent, newName, flags), done(r)),
      link: (r, ino, newParent, newName) => this.answer(r.id, async () => l.statOf(await l.link(ino, newParent, newName)), entry(r)),
      open: (r, ino, flags) =>
        this.answer(
          r.id,
          () => l.open(ino, flags),
          (fd) => {
            // Close-to-open: the size the kernel cached before this open is not trusted after it.
            a.invalidateAttr(ino)
            return a.replyOpen(r.id, fd, direct(flags) || l.uncached(fd), noflush(flags))
          },
          (fd) => l.release(fd),
        ),
      create: (r, parent, name, mode, flags) =>
        this.answer(
          r.id,
          () => this.create(owner(r), parent, name, mode, flags),
          (c) => a.replyCreate(r.id, c.st, c.fd, direct(flags), noflush(flags)),
          (c) => l.release(c.fd),
        ),
      read: (r, fh, off, size) => {
        this.stats.reads++
        this.stats.largestRead = Math.max(this.stats.largestRead, size)
        this.answer(r.id, () => l.read(fh, off, size), (data) => a.replyBuf(r.id, data))
      },
      write: (r, fh, off, data) => {
        this.stats.writes++
        this.stats.largestWrite = Math.max(this.stats.largestWrite, data.length)
        this.answer(r.id, () => l.write(fh, data, off), (n) => a.replyWrite(r.id, n))
      },
      flush: (r, fh) => {
        this.stats.flushes++
        this.answer(r.id, () => l.flush(fh), done(r))
      },
      release: (r, fh) => this.answer(r.id, () => l.release(fh), done(r)),
      fsync: (r, fh, datasync) => this.answer(r.id, () => l.fsync(fh, datasync !== 0), done(r)),
      opendir: (r) => void a.replyOpen(r.id, d.opendir()),
      readdir: (r, ino, fh, off) => this.answer(r.id, () => d.read(fh, ino, off), dir(r)),
      releasedir: (r, fh) => {
        d.releasedir(fh)
        a.replyErr(r.id, 0)
      },
      fsyncdir: (r) => this.answer(r.id, () => l.fsyncdir(), done(r)),
      statfs: (r) => this.answer(r.id, () => l.statfs(), (s) => a.replyStatfs(r.id, s)),
      // The kernel checks permissions itself (default_permissions): access only needs the inode to exist.
      access: (r, ino) => this.answer(r.id, () => l.attr(ino), done(r)),
    }
  }

  private async setattr(ino: number, s: NativeSetAttr): Promise<PosixStat> {
    const { fh, ...attrs } = s
    if (fh !== undefined && attrs.size !== undefined) {
      await this.llite.ftruncate(fh, attrs.size)
      delete attrs.size
      if (!Object.keys(attrs).length) return this.llite.stat(ino)
    }
    return this.llite.setattr(ino, attrs)
  }

  private async create(who: Owner, parent: number, name: string, mode: number, flags: number): Promise<{ fd: number; st: PosixStat }> {
    const c = await this.llite.create(parent, name, mode, flags, who)
    try {
      return { fd: c.fd, st: await this.llite.statOf(c.attr) }
    } catch (e) {
      await this.llite.release(c.fd).catch(() => undefined)
      throw e
    }
  }

  private async rename(parent: number, name: string, newParent: number, newName: string, flags: number): Promise<void> {
    const l = this.llite
    if (flags & ~RENAME_NOREPLACE) throw new LpError('EINVAL', 'rename: RENAME_EXCHANGE and RENAME_WHITEOUT are not supported')
    await l.rename(parent, name, newParent, newName, (flags & RENAME_NOREPLACE) !== 0)
  }
}
