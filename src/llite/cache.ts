import type { Clock } from '../common/clock.js'
import type { MdtAttr } from '../protocol/ops.js'
import type { Glimpse } from '../lov/lov.js'

/**
 * Short-lived caches (close-to-open coherence, as NFS): directory entries by (parent FID,
 * name) and attributes by FID, each valid for the attribute timeout. Entries are keyed by
 * FID, so renaming a directory leaves its children's entries right.
 */
interface Timed<T> {
  v: T
  expires: number
}

export interface CachedAttr {
  attr: MdtAttr
  glimpse?: Glimpse
}

export class MetaCache {
  private readonly dentries = new Map<string, Timed<number>>()
  private readonly attrs = new Map<number, Timed<CachedAttr>>()

  constructor(
    private readonly clock: Clock,
    public ttlMs: number,
  ) {}

  private fresh<T>(t: Timed<T> | undefined): T | undefined {
    return t && t.expires > this.clock.now() ? t.v : undefined
  }

  entry(parent: number, name: string): number | undefined {
    return this.fresh(this.dentries.get(`${parent}/${name}`))
  }

  setEntry(parent: number, name: string, fid: number): void {
    this.dentries.set(`${parent}/${name}`, { v: fid, expires: this.clock.now() + this.ttlMs })
  }

  dropEntry(parent: number, name: string): void {
    this.dentries.delete(`${parent}/${name}`)
  }

  attr(fid: number): CachedAttr | undefined {
    return this.fresh(this.attrs.get(fid))
  }

  /** New MDT attributes; without a glimpse a fresh cached one stays (MDT changes leave the size alone), an expired one must not be revived. */
  setAttr(attr: MdtAttr, glimpse?: Glimpse): void {
    const old = this.fresh(this.attrs.get(attr.fid))?.glimpse
    this.attrs.set(attr.fid, { v: { attr, glimpse: glimpse ?? old }, expires: this.clock.now() + this.ttlMs })
  }

  setGlimpse(fid: number, glimpse: Glimpse): void {
    const c = this.attrs.get(fid)
    if (c) c.v.glimpse = glimpse
  }

  /** Our own write extended the file: a cached size must not go backwards. */
  grow(fid: number, end: number, mtime: number): void {
    const g = this.attrs.get(fid)?.v.glimpse
    if (!g) return
    g.size = Math.max(g.size, end)
    g.mtime = Math.max(g.mtime, mtime)
  }

  dropAttr(fid: number): void {
    this.attrs.delete(fid)
  }

  /** Drop everything (an import was invalidated: cached state may be wrong). */
  clear(): void {
    this.dentries.clear()
    this.attrs.clear()
  }

  get size(): number {
    return this.attrs.size
  }
}
