import { type Clock, realClock } from '../common/clock.js'
import type { FuseFs } from '../fuse/binding.js'
import { O_ACCMODE, O_RDONLY } from '../llite/file.js'
import { READ_ON_OPEN, type DirPage, type Owner, type SetAttr, type Statfs } from '../llite/llite.js'
import { toStat, type PosixStat } from '../llite/stat.js'
import { LpError } from '../protocol/errno.js'
import type { FileType, MdtAttr } from '../protocol/ops.js'
import { CloseBatcher } from '../mdc/closes.js'
import { CLOSE_BATCH, CLOSE_DELAY_MS } from '../mdc/mdc.js'

/**
 * The floor of lproxy's design for metadata, as `lproxy selftest` times it: a filesystem with
 * no work of its own beneath lproxy's FUSE binding. Each call waits for as many RPCs as llite
 * waits for in the same call when its caches hold what they hold in the bench's metadata mix
 * (a create, a close that sends the data, an unlink, an open: one each; a stat, and a read of
 * a file its open read whole: none), and sends the MDT closes in batches after release has
 * answered, as llite's mdc does. The RPCs go to a stand-in that answers at once; only their
 * count comes from here. Files live in memory, so that the mix can read them back.
 */
export type Rpc = () => Promise<void>

interface Node {
  attr: MdtAttr
  /** Directories: name -> FID. */
  entries?: Map<string, number>
  data: Buffer
  /** Open handles: an unlinked file lives on until the last is released. */
  opens: number
}

interface Handle {
  node: Node
  dirty: boolean
}

export const FLOOR_ROOT = 1

export class FloorFs implements FuseFs {
  private readonly nodes = new Map<number, Node>()
  private readonly handles = new Map<number, Handle>()
  private nextFid = FLOOR_ROOT + 1
  private nextFd = 1
  private readonly closes: CloseBatcher

  constructor(
    private readonly rpc: Rpc,
    private readonly clock: Clock = realClock,
  ) {
    this.closes = new CloseBatcher(() => this.rpc().catch(() => undefined), clock, { max: CLOSE_BATCH, delayMs: CLOSE_DELAY_MS })
    this.nodes.set(FLOOR_ROOT, this.node(FLOOR_ROOT, 'dir', 0o755, { uid: 0, gid: 0 }, FLOOR_ROOT))
  }

  private node(fid: number, type: FileType, mode: number, who: Owner, parent?: number): Node {
    const t = this.clock.wallNow()
    const attr: MdtAttr = { fid, type, mode: mode & 0o7777, uid: who.uid, gid: who.gid, nlink: type === 'dir' ? 2 : 1, atime: t, mtime: t, ctime: t, size: 0, parent }
    return { attr, entries: type === 'dir' ? new Map() : undefined, data: Buffer.alloc(0), opens: 0 }
  }

  private get(fid: number): Node {
    const n = this.nodes.get(fid)
    if (!n) throw new LpError('ENOENT', `no FID ${fid}`)
    return n
  }

  private dir(fid: number): Map<string, number> {
    const e = this.get(fid).entries
    if (!e) throw new LpError('ENOTDIR', `FID ${fid} is not a directory`)
    return e
  }

  private handle(fd: number): Handle {
    const h = this.handles.get(fd)
    if (!h) throw new LpError('EBADF', `no open file ${fd}`)
    return h
  }

  /** A new entry: one RPC, as an MDT create is. */
  private async make(parent: number, name: string, type: FileType, mode: number, who: Owner = { uid: 0, gid: 0 }): Promise<Node> {
    const entries = this.dir(parent)
    if (entries.has(name)) throw new LpError('EEXIST', `'${name}' exists`)
    await this.rpc()
    const n = this.node(this.nextFid++, type, mode, who, type === 'dir' ? parent : undefined)
    this.nodes.set(n.attr.fid, n)
    entries.set(name, n.attr.fid)
    return n
  }

  async attr(fid: number): Promise<MdtAttr> {
    return this.get(fid).attr
  }

  async lookupStat(parent: number, name: string): Promise<{ attr: MdtAttr; st: PosixStat }> {
    const fid = this.dir(parent).get(name)
    if (fid === undefined) throw new LpError('ENOENT', `no entry '${name}'`)
    const attr = this.get(fid).attr
    return { attr, st: await this.statOf(attr) }
  }

  async stat(fid: number): Promise<PosixStat> {
    return this.statOf(this.get(fid).attr)
  }

  async statOf(a: MdtAttr): Promise<PosixStat> {
    const n = this.nodes.get(a.fid)
    const size = n?.data.length ?? 0
    return toStat(a, a.type === 'reg' ? { size, blocks: Math.ceil(size / 512), mtime: a.mtime } : undefined)
  }

  async setattr(fid: number, s: SetAttr): Promise<PosixStat> {
    const n = this.get(fid)
    await this.rpc()
    if (s.size !== undefined) n.data = resized(n.data, s.size)
    Object.assign(n.attr, { mode: s.mode ?? n.attr.mode, uid: s.uid ?? n.attr.uid, gid: s.gid ?? n.attr.gid, atime: s.atime ?? n.attr.atime, mtime: s.mtime ?? n.attr.mtime, ctime: this.clock.wallNow() })
    return this.statOf(n.attr)
  }

  async ftruncate(fd: number, size: number): Promise<void> {
    await this.setattr(this.handle(fd).node.attr.fid, { size })
  }

  async readlink(fid: number): Promise<string> {
    throw new LpError('EINVAL', `FID ${fid} is not a symlink`)
  }

  /** A page of entries; FIDs only grow, so an entry's FID serves as its cookie. */
  async listDirPage(fid: number, cookie: number, count: number): Promise<DirPage> {
    const all = [...this.dir(fid)].filter(([, f]) => f > cookie)
    await this.rpc()
    const entries = all.slice(0, count).map(([name, f]) => ({ name, fid: f, type: this.get(f).attr.type, cookie: f }))
    return { attr: this.get(fid).attr, entries, next: all.length > count ? entries.at(-1)!.fid : null }
  }

  async mkdir(parent: number, name: string, mode: number, owner?: Owner): Promise<MdtAttr> {
    return (await this.make(parent, name, 'dir', mode, owner)).attr
  }

  async symlink(): Promise<MdtAttr> {
    throw new LpError('EPERM', 'the selftest floor keeps no symlinks')
  }

  async mknod(): Promise<MdtAttr> {
    throw new LpError('EPERM', 'the selftest floor keeps no special files')
  }

  async link(): Promise<MdtAttr> {
    throw new LpError('EPERM', 'the selftest floor keeps no hard links')
  }

  async rename(): Promise<void> {
    throw new LpError('EPERM', 'the selftest floor does not rename')
  }

  async unlink(parent: number, name: string, dir = false): Promise<number> {
    const entries = this.dir(parent)
    const fid = entries.get(name)
    if (fid === undefined) throw new LpError('ENOENT', `no entry '${name}'`)
    const n = this.get(fid)
    if (dir && n.attr.type !== 'dir') throw new LpError('ENOTDIR', `'${name}' is not a directory`)
    if (!dir && n.attr.type === 'dir') throw new LpError('EISDIR', `'${name}' is a directory`)
    if (n.entries?.size) throw new LpError('ENOTEMPTY', `'${name}' is not empty`)
    await this.rpc()
    entries.delete(name)
    n.attr.nlink = 0
    this.forget(n)
    return fid
  }

  async create(parent: number, name: string, mode: number, _flags: number, owner?: Owner): Promise<{ fd: number; attr: MdtAttr }> {
    const n = await this.make(parent, name, 'reg', mode, owner)
    return { fd: this.opened(n), attr: n.attr }
  }

  async open(fid: number, flags: number): Promise<number> {
    const n = this.get(fid)
    if (n.attr.type === 'dir' && (flags & O_ACCMODE) !== O_RDONLY) throw new LpError('EISDIR', `FID ${fid} is a directory`)
    await this.rpc()
    return this.opened(n)
  }

  /** Nothing here is ever lost: the page cache serves as usual. */
  uncached(): boolean {
    return false
  }

  /** Nothing here is ever lost: no page is ever dropped for it. */
  onDataLost(): void {}

  private opened(node: Node): number {
    node.opens += 1
    const fd = this.nextFd++
    this.handles.set(fd, { node, dirty: false })
    return fd
  }

  /** One RPC, as an OST read is; none for a file an open reads whole. */
  async read(fd: number, off: number, len: number): Promise<Buffer[]> {
    const { node } = this.handle(fd)
    // llite reads a small file with its open (alongside the MDT open: one round trip there).
    if (node.data.length > READ_ON_OPEN) await this.rpc()
    return [node.data.subarray(Math.min(off, node.data.length), Math.min(off + len, node.data.length))]
  }

  /** Buffered, as llite's write-back is: no RPC. */
  async write(fd: number, data: Buffer, off: number): Promise<number> {
    const h = this.handle(fd)
    const end = off + data.length
    if (end > h.node.data.length) h.node.data = resized(h.node.data, end)
    data.copy(h.node.data, off)
    h.node.attr.mtime = this.clock.wallNow()
    h.dirty = true
    return data.length
  }

  /** Dirty data leave in one RPC, as close and fsync flush to the OST. */
  async flush(fd: number): Promise<void> {
    const h = this.handle(fd)
    if (!h.dirty) return
    await this.rpc()
    h.dirty = false
  }

  async fsync(fd: number): Promise<void> {
    await this.flush(fd)
  }

  async fsyncdir(): Promise<void> {}

  /** The MDT close leaves after release has answered, with others, as llite's does. */
  async release(fd: number): Promise<void> {
    const { node } = this.handle(fd)
    this.handles.delete(fd)
    node.opens -= 1
    this.forget(node)
    this.closes.add(String(fd))
  }

  private forget(n: Node): void {
    if (!n.attr.nlink && !n.opens) this.nodes.delete(n.attr.fid)
  }

  async statfs(): Promise<Statfs> {
    await this.rpc()
    const files = 1 << 20
    return { bsize: 4096, frsize: 4096, blocks: 1 << 20, bfree: 1 << 20, bavail: 1 << 20, files, ffree: files - this.nodes.size, favail: files - this.nodes.size, namemax: 255 }
  }
}

function resized(b: Buffer, size: number): Buffer {
  if (size <= b.length) return b.subarray(0, size)
  const out = Buffer.alloc(size)
  b.copy(out)
  return out
}
