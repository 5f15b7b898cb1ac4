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
 *
 * Expired entries are kept a while as guesses (what a name last named, with its layout), to
 * start work that the MDT's answer then confirms or discards; they are never answers.
 *
 * Statahead's answers were asked for before they arrive: a watch started when the batch went
 * out records the names and FIDs set or dropped meanwhile, whose batch answers are older than
 * what the cache now knows and are not kept.
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

/** Names (`parent/name`) and FIDs the cache changed since a statahead batch went out. */
export class CacheWatch {
  readonly touched = new Set<string | number>()
  /** The whole cache was dropped. */
  cleared = false
}

/** Expired entries are swept once this many were added since the last sweep, or as many as were left then. */
const SWEEP_MIN = 4096
/** How long past its expiry an entry stays as a guess. */
const GUESS_MS = 10_000

export class MetaCache {
  private readonly dentries = new Map<string, Timed<number>>()
  private readonly attrs = new Map<number, Timed<CachedAttr>>()
  private readonly whole = new Map<number, Timed<Whole>>()
  private readonly watches = new Set<CacheWatch>()
  private added = 0
  private sweepAfter = SWEEP_MIN

  constructor(
    private readonly clock: Clock,
    public ttlMs: number,
  ) {}

  private fresh<T>(t: Timed<T> | undefined): T | undefined {
    return t && t.expires > this.clock.now() ? t.v : undefined
  }

  /** Store an entry; every so often drop the expired ones, so a mount walking millions of files stays small (amortised O(1)). */
  private put<K, T>(m: Map<K, Timed<T>>, k: K, v: T, expires: number): void {
    m.set(k, { v, expires })
    if (++this.added < this.sweepAfter) return
    const now = this.clock.now()
    const maps: Array<Map<unknown, Timed<unknown>>> = [this.dentries, this.attrs, this.whole]
    for (const map of maps) for (const [key, t] of map) if (t.expires + GUESS_MS <= now) map.delete(key)
    this.added = 0
    this.sweepAfter = Math.max(SWEEP_MIN, this.size)
  }

  /** A name (`parent/name`) or FID changes: batches on the way must not overwrite it. */
  private touch(key: string | number): void {
    for (const w of this.watches) w.touched.add(key)
  }

  /** Start recording changes, for answers asked for now and kept later (`prime`). */
  watch(): CacheWatch {
    const w = new CacheWatch()
    this.watches.add(w)
    return w
  }

  unwatch(w: CacheWatch): void {
    this.watches.delete(w)
  }

  /** Keep statahead's answers for `parent`, asked for when `w` began, except those the cache changed since. */
  prime(w: CacheWatch, parent: number, found: Array<{ name: string; attr: MdtAttr; glimpse?: Glimpse }>): number {
    this.unwatch(w)
    if (w.cleared) return 0
    let kept = 0
    for (const f of found) {
      if (w.touched.has(`${parent}/${f.name}`) || w.touched.has(f.attr.fid)) continue
      this.setEntry(parent, f.name, f.attr.fid)
      this.setAttr(f.attr, f.glimpse)
      kept++
    }
    return kept
  }

  entry(parent: number, name: string): number | undefined {
    return this.fresh(this.dentries.get(`${parent}/${name}`))
  }

  /** What `name` last named, fresh or not (a guess, to be confirmed). */
  guess(parent: number, name: string): MdtAttr | undefined {
    const fid = this.dentries.get(`${parent}/${name}`)?.v
    return fid === undefined ? undefined : this.attrs.get(fid)?.v.attr
  }

  setEntry(parent: number, name: string, fid: number): void {
    const key = `${parent}/${name}`
    this.touch(key)
    this.put(this.dentries, key, fid, this.clock.now() + this.ttlMs)
  }

  dropEntry(parent: number, name: string): void {
    const key = `${parent}/${name}`
    this.touch(key)
    this.dentries.delete(key)
  }

  /** A directory just made (empty) by this client, at change counter `change`. */
  setWhole(dir: number, change: number): void {
    this.put(this.whole, dir, { change, names: new Set<string>() }, this.clock.now() + this.ttlMs)
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
    this.touch(attr.fid)
    const old = this.fresh(this.attrs.get(attr.fid))?.glimpse
    const expires = this.clock.now() + this.ttlMs
    this.put(this.attrs, attr.fid, { attr, glimpse: glimpse ?? old }, expires)
    // A directory's attributes are proof too: unchanged, its known names hold for longer.
    const w = attr.change === undefined ? undefined : this.whole.get(attr.fid)
    if (w && w.v.change === attr.change) w.expires = expires
    else if (w) this.whole.delete(attr.fid)
  }

  setGlimpse(fid: number, glimpse: Glimpse): void {
    this.touch(fid)
    const c = this.attrs.get(fid)
    if (c) c.v.glimpse = glimpse
  }

  /** Sizes glimpsed from objects whose OST was lost (its import invalidated) are no longer known. */
  dropGlimpses(on: (attr: MdtAttr) => boolean): void {
    for (const [fid, t] of this.attrs) {
      if (!t.v.glimpse || !on(t.v.attr)) continue
      this.touch(fid)
      t.v.glimpse = undefined
    }
  }

  /** Our own write extended the file: a cached size must not go backwards. */
  grow(fid: number, end: number, mtime: number): void {
    this.touch(fid)
    const g = this.attrs.get(fid)?.v.glimpse
    if (!g) return
    g.size = Math.max(g.size, end)
    g.mtime = Math.max(g.mtime, mtime)
  }

  dropAttr(fid: number): void {
    this.touch(fid)
    this.attrs.delete(fid)
  }

  /** Drop everything (an import was invalidated: cached state may be wrong). */
  clear(): void {
    for (const w of this.watches) w.cleared = true
    this.dentries.clear()
    this.attrs.clear()
    this.whole.clear()
  }

  /** Entries held, expired ones not yet swept included. */
  get size(): number {
    return this.dentries.size + this.attrs.size + this.whole.size
  }
}
