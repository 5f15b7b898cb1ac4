import { basename, dirname } from 'node:path'
import { createRequire } from 'node:module'
import type { Llite, SetAttr } from '../llite/llite.js'
import { copyFrom, totalLength } from '../common/chunks.js'
import { PathFs } from '../llite/paths.js'
import { typeBits } from '../llite/stat.js'
import type { FuseBinding, FuseMountOptions } from './binding.js'
import { fuseStatus } from './errno.js'
import { tuneConnection, watchConnection } from './fusectl.js'

/**
 * The only code that knows fuse-native: its callbacks become llite calls, errors become
 * negative errnos. Three binding facts shape it: its 15 s per-operation timeout is off
 * (failover waits as long as it takes); `big_writes` is not in its option list, so the
 * option string is extended here; and the buffers it passes are detached after the
 * callback, so written data is copied before it is kept (the replay list keeps it).
 * It cannot tell the kernel to drop cached pages: a handle opened before an OST was lost may
 * still read its old pages there (llite.onDataLost is not listened to).
 */
const require = createRequire(import.meta.url)
const Fuse = require('fuse-native') as FuseCtor

type Cb = (...args: unknown[]) => void
interface FuseInstance {
  mount(cb: (err: Error | null) => void): void
  unmount(cb: (err: Error | null) => void): void
  _fuseOptions(): string
}
type FuseCtor = { new (mnt: string, ops: Record<string, unknown>, opts: Record<string, unknown>): FuseInstance; unmount(mnt: string, cb: (err: Error | null) => void): void }

/** libfuse 2 hides an open file it is asked to unlink by renaming it to this kind of name. */
const HIDDEN = /^\.fuse_hidden[0-9a-f]+$/

/** UTIME_NOW / UTIME_OMIT reach us as 1073 ms (the binding folds the nanosecond marker into ms). */
const UTIME_SPECIAL_MS = 2000

export class FuseAdapter implements FuseBinding {
  private fuse: FuseInstance | null = null
  private unwatch: () => void = () => undefined
  /** Hidden names of unlinked-but-open files -> their FID (the MDT keeps them until the last close). */
  private readonly hidden = new Map<string, number>()

  constructor(
    private readonly llite: Llite,
    private readonly o: FuseMountOptions,
  ) {}

  /** Run `fn` and answer the kernel: cb(0, result) or cb(-errno). */
  private call<T>(cb: Cb, fn: () => Promise<T>, reply: (v: T) => unknown[] = () => []): void {
    fn().then(
      (v) => cb(0, ...reply(v)),
      (e) => cb(fuseStatus(e, this.o.log)),
    )
  }

  /** read/write answer with a count or a negative errno in one argument. */
  private count(cb: Cb, fn: () => Promise<number>): void {
    fn().then(
      (n) => cb(n),
      (e) => cb(fuseStatus(e, this.o.log)),
    )
  }

  private ops(): Record<string, unknown> {
    const l = this.llite
    const p = new PathFs(l)
    return {
      init: (cb: Cb) => cb(0),
      access: (path: string, _mode: number, cb: Cb) => this.call(cb, () => (this.hidden.has(path) ? Promise.resolve() : p.resolve(path).then(() => undefined))),
      statfs: (_p: string, cb: Cb) => this.call(cb, () => l.statfs(), (s) => [s]),
      getattr: (path: string, cb: Cb) => {
        const fid = this.hidden.get(path)
        if (fid === undefined && HIDDEN.test(basename(path))) return cb(-2)
        this.call(cb, () => (fid !== undefined ? l.stat(fid) : p.getattr(path)), (s) => [s])
      },
      readdir: (path: string, cb: Cb) =>
        this.call(
          cb,
          () => p.readdir(path),
          // libfuse 2's high-level API lists '.' and '..' only if the filesystem does.
          ({ self, parent, entries }) => [
            ['.', '..', ...entries.map((e) => e.name)],
            [self, parent, ...entries.map((e) => e.fid)].map((ino, i) => ({ ino, mode: typeBits(i < 2 ? 'dir' : entries[i - 2]!.type) })),
          ],
        ),
      mkdir: (path: string, mode: number, cb: Cb) => this.call(cb, () => p.mkdir(path, mode)),
      mknod: (path: string, mode: number, dev: number, cb: Cb) => this.call(cb, () => p.mknod(path, mode, dev)),
      rmdir: (path: string, cb: Cb) => this.call(cb, () => p.unlink(path, true).then(() => undefined)),
      create: (path: string, mode: number, cb: Cb) => this.call(cb, () => p.create(path, mode, 0o102), (fd) => [fd]),
      open: (path: string, flags: number, cb: Cb) => {
        const fid = this.hidden.get(path)
        this.call(cb, () => (fid !== undefined ? l.open(fid, flags) : p.open(path, flags)), (fd) => [fd])
      },
      read: (_p: string, fd: number, buf: Buffer, len: number, off: number, cb: Cb) =>
        this.count(cb, async () => {
          const data = await l.read(fd, off, len)
          copyFrom(data, buf, 0, 0, len)
          return totalLength(data)
        }),
      write: (_p: string, fd: number, buf: Buffer, len: number, off: number, cb: Cb) =>
        this.count(cb, () => l.write(fd, Buffer.from(buf.subarray(0, len)), off)),
      flush: (_p: string, fd: number, cb: Cb) => this.call(cb, () => l.flush(fd)),
      fsync: (_p: string, datasync: number, fd: number, cb: Cb) => this.call(cb, () => l.fsync(fd, !!datasync)),
      fsyncdir: (_p: string, _datasync: number, _fd: number, cb: Cb) => this.call(cb, () => l.fsyncdir()),
      release: (_p: string, fd: number, cb: Cb) => this.call(cb, () => l.release(fd)),
      truncate: (path: string, size: number, cb: Cb) => this.call(cb, () => this.setattr(path, { size })),
      ftruncate: (_p: string, fd: number, size: number, cb: Cb) => this.call(cb, () => l.ftruncate(fd, size)),
      chmod: (path: string, mode: number, cb: Cb) => this.call(cb, () => this.setattr(path, { mode })),
      chown: (path: string, uid: number, gid: number, cb: Cb) => this.call(cb, () => this.setattr(path, { uid, gid })),
      utimens: (path: string, atime: number, mtime: number, cb: Cb) =>
        this.call(cb, () => {
          const now = Date.now()
          const fix = (t: number) => (t < UTIME_SPECIAL_MS ? now : t)
          return this.setattr(path, { atime: fix(atime), mtime: fix(mtime) })
        }),
      unlink: (path: string, cb: Cb) => {
        if (this.hidden.delete(path)) return cb(0)
        this.call(cb, () => p.unlink(path).then(() => undefined))
      },
      rename: (src: string, dest: string, cb: Cb) => {
        // libfuse hides an open file instead of unlinking it; the MDT already keeps an
        // unlinked file while it is open, so unlink the name and remember the hidden one.
        if (HIDDEN.test(basename(dest)) && dirname(src) === dirname(dest))
          return this.call(cb, async () => void this.hidden.set(dest, await p.unlink(src)))
        this.call(cb, () => p.rename(src, dest))
      },
      link: (src: string, dest: string, cb: Cb) => this.call(cb, () => p.link(src, dest)),
      symlink: (target: string, path: string, cb: Cb) => this.call(cb, () => p.symlink(target, path)),
      readlink: (path: string, cb: Cb) => this.call(cb, () => p.readlink(path), (t) => [t]),
    }
  }

  /** setattr on the object a path (or a hidden unlinked-but-open name) stands for. */
  private async setattr(path: string, s: SetAttr): Promise<void> {
    const fid = this.hidden.get(path) ?? (await new PathFs(this.llite).resolve(path)).fid
    await this.llite.setattr(fid, s)
  }

  async mount(): Promise<void> {
    const o = this.o
    const extra = [
      'big_writes',
      'max_write=131072',
      'max_read=131072',
      'use_ino',
      'default_permissions',
      'allow_other',
      o.dev ? 'dev' : 'nodev',
      ...(o.flags ?? []),
      `fsname=${o.fsname}`,
      'subtype=lproxy',
      `entry_timeout=${o.attrTimeoutS}`,
      // libfuse 2 gives each hard link its own kernel inode, which the kernel cannot keep
      // coherent; llite's FID-keyed cache is invalidated by our own changes, so it caches instead.
      'attr_timeout=0',
    ].join(',')
    class LproxyFuse extends Fuse {
      override _fuseOptions(): string {
        const base = super._fuseOptions()
        return base ? `${base},${extra}` : `-o${extra}`
      }
    }
    const fuse = new LproxyFuse(o.mountpoint, this.ops(), { timeout: false })
    await new Promise<void>((resolve, reject) => fuse.mount((err) => (err ? reject(err) : resolve())))
    this.fuse = fuse
    const device = await tuneConnection(o.mountpoint, o.log)
    // fuse-native says nothing when the kernel ends the session: watch the connection instead.
    const ended = o.ended
    if (ended) {
      this.unwatch = await watchConnection(o.mountpoint, device, o.log, () => {
        // Nothing is left to unmount.
        this.fuse = null
        ended()
      })
    }
  }

  async unmount(): Promise<void> {
    this.unwatch()
    const f = this.fuse
    if (!f) return
    this.fuse = null
    await new Promise<void>((resolve, reject) => f.unmount((err) => (err ? reject(err) : resolve())))
  }
}
