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

/** An object file open in the store: closed once evicted and no request uses it any more. */
interface OpenObject {
  readonly fh: fsp.FileHandle
  /** Written since its last sync. */
  dirty: boolean
  /** Requests between their first and last syscall on it. */
  users: number
  /** Evicted or destroyed while in use: called by the last user. */
  idle?: () => void
}

export class ObjectStore {
  readonly objects = new Map<string, ObjStat>()
  /** fid -> stripes present, for destroy by fid. */
  readonly byFid = new Map<number, Set<number>>()
  /** Open object files, the least recently used closed past MAX_OPEN (retire). */
  private readonly handles = new LRUCache<string, OpenObject>({
    max: MAX_OPEN,
    dispose: (o, _key, reason) => {
      if (reason === 'evict') this.retire(o)
    },
  })
  /** Opens under way, shared: two requests reaching an unopened object must not both open it (the second would replace, and leak, the first). */
  private readonly opening = new Map<string, Promise<OpenObject | null>>()
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

  /** The object's open file; `create` false: null when the file is gone (never recreate it for a read). */
  private handle(key: string, create: boolean): Promise<OpenObject | null> {
    const o = this.handles.get(key)
    if (o) return Promise.resolve(o)
    const under = this.opening.get(key)
    // A read's open that found no file does not serve a write: that one opens again, creating.
    if (under) return under.then((o) => o ?? (create ? this.handle(key, create) : null))
    const opened = this.open(key, create).finally(() => this.opening.delete(key))
    this.opening.set(key, opened)
    return opened
  }

  private async open(key: string, create: boolean): Promise<OpenObject | null> {
    let fh: fsp.FileHandle
    try {
      fh = await fsp.open(this.file(key), constants.O_RDWR | (create ? constants.O_CREAT : 0), 0o600)
    } catch (e) {
      if (!create && (e as NodeJS.ErrnoException).code === 'ENOENT') return null
      throw e
    }
    const o: OpenObject = { fh, dirty: false, users: 0 }
    this.handles.set(key, o)
    if (create) this.dirtyDirs.add(path.dirname(this.file(key)))
    return o
  }

  /**
   * Run `io` on the object's open file, which stays open until it is done: other requests may
   * evict it from the cache between two of its syscalls. `create` (fenced: it may create the
   * file): open it if missing; otherwise null, and `io` not run, when there is no file.
   */
  private async using<T>(key: string, create: boolean, io: (o: OpenObject) => Promise<T>): Promise<T | null> {
    const o = create ? await this.fenced(() => this.handle(key, true)) : await this.handle(key, false)
    return o && this.pinned(o, () => io(o))
  }

  /**
   * Change the object's file (creating it if missing), then mark it dirty: also when a syscall
   * failed after others landed, and after any sync that ran meanwhile (which may have missed them).
   */
  private async changing(key: string, io: (fh: fsp.FileHandle) => Promise<void>): Promise<void> {
    await this.using(key, true, async (o) => {
      try {
        await io(o.fh)
      } finally {
        o.dirty = true
      }
    })
  }

  /** Run `io` with `o` kept open: pinned at once, synchronously, so no eviction closes it first. */
  private async pinned<T>(o: OpenObject, io: () => Promise<T>): Promise<T> {
    o.users++
    try {
      return await io()
    } finally {
      if (--o.users === 0) o.idle?.()
    }
  }

  /** Close an open object file once no request uses it, synced first if dirty and `sync`. */
  private async release(o: OpenObject, sync: boolean): Promise<void> {
    if (o.users) await new Promise<void>((resolve) => (o.idle = resolve))
    try {
      if (sync && o.dirty) await o.fh.sync()
    } finally {
      await o.fh.close().catch(() => undefined)
    }
  }

  /** An evicted handle: synced if dirty, then closed, off the path of the request that evicted it. */
  private retire(o: OpenObject): void {
    const done = this.release(o, true)
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
    await this.changing(key, async (fh) => {
      await this.fenced(() => writevAll(fh, data, off))
      // The object's mtime is the write's, not the (later) commit's: it must survive a restart.
      await this.fenced(() => fh.utimes(mtime / 1000, mtime / 1000))
    })
    const prev = this.objects.get(key)
    const len = bulkLength(data)
    const size = Math.max(prev?.size ?? 0, len ? off + len : 0)
    this.track(fid, stripe, { size, blocks: Math.ceil(size / 512), mtime })
  }

  async truncate(fid: number, stripe: number, size: number, mtime: number): Promise<void> {
    await this.changing(objKey(fid, stripe), async (fh) => {
      await this.fenced(() => fh.truncate(size))
      await this.fenced(() => fh.utimes(mtime / 1000, mtime / 1000))
    })
    this.track(fid, stripe, { size, blocks: Math.ceil(size / 512), mtime })
  }

  async setMtime(fid: number, stripe: number, mtime: number): Promise<void> {
    const key = objKey(fid, stripe)
    const st = this.objects.get(key)
    if (!st) return
    // Synced at the checkpoint like any change: the journal that holds it goes then.
    await this.changing(key, (fh) => this.fenced(() => fh.utimes(mtime / 1000, mtime / 1000)))
    st.mtime = mtime
  }

  async destroy(fid: number): Promise<void> {
    for (const stripe of [...(this.byFid.get(fid) ?? [])]) {
      const key = objKey(fid, stripe)
      // An open under way would cache a handle on the removed file.
      await this.opening.get(key)?.catch(() => undefined)
      const o = this.handles.peek(key)
      this.handles.delete(key)
      if (o) await this.release(o, false)
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
      const want = Math.min(buf.length, st.size - off)
      // Destroyed meanwhile (a commit applying its destroy): no file, it reads as zeros.
      await this.using(key, false, async (o) => {
        while (done < want) {
          const { bytesRead } = await o.fh.read(buf, done, want - done, off + done)
          if (bytesRead === 0) break
          done += bytesRead
        }
      })
    } finally {
      buf.fill(0, done)
    }
  }

  /** Make every committed change durable (checkpoint). */
  async syncAll(): Promise<void> {
    for (const [key, o] of [...this.handles.entries()]) {
      // Evicted since (by a read, say): it syncs itself, below.
      if (this.handles.peek(key) !== o || !o.dirty) continue
      // Cleared first: a write landing during the sync marks it again.
      o.dirty = false
      await this.pinned(o, () => o.fh.sync()).catch((e: unknown) => {
        o.dirty = true
        throw e
      })
    }
    // After the open ones: those evicted while they synced sync themselves.
    const closing = [...this.closing]
    for (const p of closing) this.closing.delete(p)
    await Promise.all(closing)
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
    await Promise.allSettled([...this.opening.values(), ...this.closing])
    this.closing.clear()
    const open = [...this.handles.values()]
    this.handles.clear()
    await Promise.allSettled(open.map((o) => this.release(o, false)))
  }
}
