import type { Clock } from '../common/clock.js'
import type { MdtAttr } from '../protocol/ops.js'
import type { Glimpse } from '../lov/lov.js'

/**
 * Short-lived caches (close-to-open coherence, as NFS): directory entries by (parent FID,
 * name) and attributes by FID, each valid for the attribute timeout. Entries are keyed by
 * FID, so renaming a directory leaves its children's entries right.
 *
 * Directories this client made, and has seen every change of since (each change's reply
 * carries the directory's change counter before it), are known whole: for the attribute
 * timeout after the last such proof, a name they lack does not exist, and its lookup needs
 * no RPC (as Lustre caches negative dentries under the parent's lock).
 */
interface Timed<T> {
  v: T
  expires: number
}

export interface CachedAttr {
  attr: MdtAttr
  glimpse?: Glimpse
}

/** A directory's names as of its change counter `change`. */
interface Whole {
  change: number
  names: Set<string>
}

export class MetaCache {
  private readonly dentries = new Map<string, Timed<number>>()
  private readonly attrs = new Map<number, Timed<CachedAttr>>()
  private readonly whole = new Map<number, Timed<Whole>>()

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

  /** A directory just made (empty) by this client, at change counter `change`. */
  setWhole(dir: number, change: number): void {
    this.whole.set(dir, { v: { change, names: new Set() }, expires: this.clock.now() + this.ttlMs })
  }

  /** True when `name` is known not to exist in `dir`. */
  absent(dir: number, name: string): boolean {
    const w = this.fresh(this.whole.get(dir))
    return w !== undefined && !w.names.has(name)
  }

  /**
   * This client changed `dir`'s entries; `was` and `now` are its change counters before and
   * after. With nobody else's change in between the names stay known, `edit` applied.
   */
  dirChanged(dir: number, was: number, now: number, edit: (names: Set<string>) => void): void {
    const w = this.whole.get(dir)
    if (!w) return
    if (w.v.change !== was) {
      this.whole.delete(dir)
      return
    }
    edit(w.v.names)
    w.v.change = now
    w.expires = this.clock.now() + this.ttlMs
  }

  dropWhole(dir: number): void {
    this.whole.delete(dir)
  }

  attr(fid: number): CachedAttr | undefined {
    return this.fresh(this.attrs.get(fid))
  }

  /** New MDT attributes; without a glimpse a fresh cached one stays (MDT changes leave the size alone), an expired one must not be revived. */
  setAttr(attr: MdtAttr, glimpse?: Glimpse): void {
    const old = this.fresh(this.attrs.get(attr.fid))?.glimpse
    const expires = this.clock.now() + this.ttlMs
    this.attrs.set(attr.fid, { v: { attr, glimpse: glimpse ?? old }, expires })
    // A directory's attributes are proof too: unchanged, its known names hold for longer.
    const w = attr.change === undefined ? undefined : this.whole.get(attr.fid)
    if (w && w.v.change === attr.change) w.expires = expires
    else if (w) this.whole.delete(attr.fid)
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
    this.whole.clear()
  }

  get size(): number {
    return this.attrs.size
  }
}
