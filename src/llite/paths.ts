import { LpError } from '../protocol/errno.js'
import type { DirEntry, MdtAttr } from '../protocol/ops.js'
import { ROOT_FID, type Llite } from './llite.js'
import type { PosixStat } from './stat.js'

/** PATH_MAX, with its NUL: the longest path the kernel passes is one byte shorter. */
const PATH_MAX = 4096

/**
 * Path-based calls over llite, for callers that speak in paths (a high-level FUSE binding,
 * the control socket): every path is walked component by component through llite's
 * FID-keyed entry cache.
 */
export class PathFs {
  constructor(readonly ll: Llite) {}

  private split(path: string): string[] {
    if (!path.startsWith('/')) throw new LpError('EINVAL', `not an absolute path: ${path}`)
    if (Buffer.byteLength(path) >= PATH_MAX) throw new LpError('ENAMETOOLONG', `a path is at most ${PATH_MAX - 1} bytes`)
    return path.split('/').filter((c) => c.length > 0)
  }

  async resolve(path: string): Promise<MdtAttr> {
    let cur = await this.ll.attr(ROOT_FID)
    for (const name of this.split(path)) {
      if (cur.type !== 'dir') throw new LpError('ENOTDIR', `a component of ${path} is not a directory`)
      cur = await this.ll.lookup(cur.fid, name)
    }
    return cur
  }

  /** The directory holding `path`, and the name in it. */
  async parentOf(path: string): Promise<{ parent: number; name: string }> {
    const parts = this.split(path)
    const name = parts.pop()
    if (name === undefined) throw new LpError('EBUSY', 'the root has no parent')
    const parent = await this.resolve('/' + parts.join('/'))
    if (parent.type !== 'dir') throw new LpError('ENOTDIR', `parent of ${path} is not a directory`)
    return { parent: parent.fid, name }
  }

  async getattr(path: string): Promise<PosixStat> {
    return this.ll.statOf(await this.resolve(path))
  }

  /** A directory's entries with the FIDs of '.' and '..' (a high-level binding lists those too). */
  async readdir(path: string): Promise<{ self: number; parent: number; entries: DirEntry[] }> {
    const a = await this.resolve(path)
    const parts = this.split(path)
    const parent = parts.length ? (await this.resolve('/' + parts.slice(0, -1).join('/'))).fid : a.fid
    return { self: a.fid, parent, entries: await this.ll.readdir(a.fid) }
  }

  async mkdir(path: string, mode: number): Promise<void> {
    const { parent, name } = await this.parentOf(path)
    await this.ll.mkdir(parent, name, mode)
  }

  async symlink(target: string, path: string): Promise<void> {
    const { parent, name } = await this.parentOf(path)
    await this.ll.symlink(target, parent, name)
  }

  async readlink(path: string): Promise<string> {
    return this.ll.readlink((await this.resolve(path)).fid)
  }

  async mknod(path: string, mode: number, rdev: number): Promise<void> {
    const { parent, name } = await this.parentOf(path)
    await this.ll.mknod(parent, name, mode, rdev)
  }

  async unlink(path: string, dir = false): Promise<number> {
    const { parent, name } = await this.parentOf(path)
    return this.ll.unlink(parent, name, dir)
  }

  async rename(from: string, to: string): Promise<void> {
    const src = await this.parentOf(from)
    const dst = await this.parentOf(to)
    await this.ll.rename(src.parent, src.name, dst.parent, dst.name)
  }

  async link(from: string, to: string): Promise<void> {
    const a = await this.resolve(from)
    const dst = await this.parentOf(to)
    await this.ll.link(a.fid, dst.parent, dst.name)
  }

  async create(path: string, mode: number, flags: number): Promise<number> {
    const { parent, name } = await this.parentOf(path)
    return (await this.ll.create(parent, name, mode, flags)).fd
  }

  async open(path: string, flags: number): Promise<number> {
    return this.ll.open((await this.resolve(path)).fid, flags)
  }
}
