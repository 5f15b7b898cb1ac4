import { promises as fsp, constants } from 'node:fs'
import path from 'node:path'
import { LRUCache } from 'lru-cache'
import { fsyncDir, mkdirDurable, writevAll } from '../../common/fsutil.js'
import type { Fence } from '../target/mmp.js'
import { bulkLength } from '../../protocol/wire.js'

/**
 * Committed OST objects: one sparse file per object, `O/d<fid % 32>/<fid>.<stripe>` (ldiskfs
 * keeps objects under O/ too). Files are written only with committed changes; they are
 * fsynced at checkpoints, the journal covering them in between.
 */
export interface ObjStat {
  size: number
  blocks: number
  mtime: number
}

export function objKey(fid: number, stripe: number): string {
  return `${fid}.${stripe}`
}

const MAX_OPEN = 64

export class ObjectStore {
  readonly objects = new Map<string, ObjStat>()
  /** fid -> stripes present, for destroy by fid. */
  readonly byFid = new Map<number, Set<number>>()
  /** Open object files, the least recently used closed past MAX_OPEN (retire). */
  private readonly handles = new LRUCache<string, fsp.FileHandle>({
    max: MAX_OPEN,
    dispose: (fh, key, reason) => {
      if (reason === 'evict') this.retire(key, fh)
    },
  })
  private readonly dirty = new Set<string>()
  private readonly dirtyDirs = new Set<string>()
  /**
   * Evicted handles being synced (if dirty) and closed, off the path of the request that
   * evicted them (each is a thread-pool round trip); a checkpoint waits for them, and fails
   * with the first sync that did.
   */
  private readonly closing = new Set<Promise<unknown>>()

  constructor(
    private readonly root: string,
    /** MMP: asked before each change to an object file. */
    private readonly fence?: Fence,
  ) {}

  private file(key: string): string {
    const fid = Number(key.slice(0, key.indexOf('.')))
    return path.join(this.root, 'O', `d${fid % 32}`, key)
  }

  async load(): Promise<void> {
    for (let d = 0; d < 32; d++) {
      const dir = path.join(this.root, 'O', `d${d}`)
      await mkdirDurable(dir)
      for (const name of await fsp.readdir(dir)) {
        const m = /^(\d+)\.(\d+)$/.exec(name)
        if (!m) continue
        const st = await fsp.stat(path.join(dir, name))
        this.track(Number(m[1]), Number(m[2]), { size: st.size, blocks: st.blocks, mtime: st.mtimeMs })
      }
    }
  }

  private track(fid: number, stripe: number, st: ObjStat): void {
    this.objects.set(objKey(fid, stripe), st)
    let s = this.byFid.get(fid)
    if (!s) this.byFid.set(fid, (s = new Set()))
    s.add(stripe)
  }

  private untrack(fid: number, stripe: number): void {
    this.objects.delete(objKey(fid, stripe))
    const s = this.byFid.get(fid)
    s?.delete(stripe)
    if (s && !s.size) this.byFid.delete(fid)
  }

  /** An open handle on the object's file; `create` false: null when the file is gone (never recreate it for a read). */
  private async handle(key: string, create = true): Promise<fsp.FileHandle | null> {
    let fh = this.handles.get(key)
    if (fh) return fh
    try {
      fh = await fsp.open(this.file(key), constants.O_RDWR | (create ? constants.O_CREAT : 0), 0o600)
    } catch (e) {
      if (!create && (e as NodeJS.ErrnoException).code === 'ENOENT') return null
      throw e
    }
    this.handles.set(key, fh)
    if (create) this.dirtyDirs.add(path.dirname(this.file(key)))
    return fh
  }

  /** An evicted handle: synced if dirty, then closed, off the path of the request that evicted it. */
  private retire(key: string, fh: fsp.FileHandle): void {
    const synced = this.dirty.delete(key) ? fh.sync() : Promise.resolve()
    const done = synced.finally(() => fh.close().catch(() => undefined))
    this.closing.add(done)
    // Done, it is forgotten (an OST that only serves reads may never checkpoint); failed, it stays for the next checkpoint to fail with.
    done.then(
      () => this.closing.delete(done),
      () => undefined,
    )
  }

  /**
   * MMP: asked right before every syscall that changes the object, not once per call: a node
   * stopped (SIGSTOP) between two of them resumes with its check stale, and must not let the
   * second land on a target its partner serves now.
   */
  private async fenced<T>(syscall: () => Promise<T>): Promise<T> {
    await this.fence?.check()
    return syscall()
  }

  async write(fid: number, stripe: number, off: number, data: readonly Buffer[], mtime: number): Promise<void> {
    const key = objKey(fid, stripe)
    const fh = (await this.fenced(() => this.handle(key)))!
    await this.fenced(() => writevAll(fh, data, off))
    // The object's mtime is the write's, not the (later) commit's: it must survive a restart.
    await this.fenced(() => fh.utimes(mtime / 1000, mtime / 1000))
    const prev = this.objects.get(key)
    const len = bulkLength(data)
    const size = Math.max(prev?.size ?? 0, len ? off + len : 0)
    this.track(fid, stripe, { size, blocks: Math.ceil(size / 512), mtime })
    this.dirty.add(key)
  }

  async truncate(fid: number, stripe: number, size: number, mtime: number): Promise<void> {
    const key = objKey(fid, stripe)
    const fh = (await this.fenced(() => this.handle(key)))!
    await this.fenced(() => fh.truncate(size))
    await this.fenced(() => fh.utimes(mtime / 1000, mtime / 1000))
    this.track(fid, stripe, { size, blocks: Math.ceil(size / 512), mtime })
    this.dirty.add(key)
  }

  async setMtime(fid: number, stripe: number, mtime: number): Promise<void> {
    const key = objKey(fid, stripe)
    const st = this.objects.get(key)
    if (!st) return
    const fh = (await this.fenced(() => this.handle(key)))!
    await this.fenced(() => fh.utimes(mtime / 1000, mtime / 1000))
    st.mtime = mtime
  }

  async destroy(fid: number): Promise<void> {
    for (const stripe of [...(this.byFid.get(fid) ?? [])]) {
      const key = objKey(fid, stripe)
      const fh = this.handles.peek(key)
      this.handles.delete(key)
      this.dirty.delete(key)
      await fh?.close()
      await this.fenced(() => fsp.rm(this.file(key), { force: true }))
      this.dirtyDirs.add(path.dirname(this.file(key)))
      this.untrack(fid, stripe)
    }
  }

  /**
   * Read committed bytes into `buf`, which may hold anything before: what the file does not
   * give (no object, past its end) is zeroed, so that no byte of old memory leaves the node.
   */
  async read(fid: number, stripe: number, off: number, buf: Buffer): Promise<void> {
    let done = 0
    try {
      const key = objKey(fid, stripe)
      const st = this.objects.get(key)
      if (!st || off >= st.size) return
      // Destroyed meanwhile (a commit applying its destroy): it reads as zeros.
      const fh = await this.handle(key, false)
      if (!fh) return
      const want = Math.min(buf.length, st.size - off)
      while (done < want) {
        const { bytesRead } = await fh.read(buf, done, want - done, off + done)
        if (bytesRead === 0) break
        done += bytesRead
      }
    } finally {
      buf.fill(0, done)
    }
  }

  /** Make every committed change durable (checkpoint). */
  async syncAll(): Promise<void> {
    const closing = [...this.closing]
    for (const p of closing) this.closing.delete(p)
    await Promise.all(closing)
    for (const key of [...this.dirty]) {
      const fh = this.handles.peek(key)
      if (fh) await fh.sync()
      this.dirty.delete(key)
    }
    // New and removed objects are directory entries: they must be durable before the journal goes.
    for (const dir of [...this.dirtyDirs]) {
      await fsyncDir(dir)
      this.dirtyDirs.delete(dir)
    }
  }

  /** Evicted handles not yet closed, or whose sync failed and no checkpoint has reported. */
  get closingHandles(): number {
    return this.closing.size
  }

  async close(): Promise<void> {
    await Promise.allSettled([...this.closing])
    this.closing.clear()
    for (const fh of this.handles.values()) await fh.close().catch(() => undefined)
    this.handles.clear()
  }
}
