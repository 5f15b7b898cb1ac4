import { LRUCache } from 'lru-cache'
import type { Clock } from '../common/clock.js'
import type { Logger } from '../common/log.js'
import type { Lov } from '../lov/lov.js'
import type { Mdc } from '../mdc/mdc.js'
import type { MdtAttr } from '../protocol/ops.js'
import type { MetaCache } from './cache.js'
import { ListingOrder, NUMBERED, type NameSequence } from './sequence.js'
import { defaultOf, param } from '../common/registry.js'

/**
 * Statahead, as Lustre's llite does it for `ls -l` and mdtest: a process that looks up the
 * names of a directory one after another, in numbered order (`f1`, `f2`, `f3`, ...) or in
 * the order the directory's listing gave them, gets the following names fetched ahead, many
 * per RPC (one mdt_batch_lookup, then one ost_getattr per OST for their sizes: the async
 * glimpse), so its lookups find them cached. Advisory: a failed batch leaves the lookups to
 * ask for themselves.
 *
 * Its answers live as long as any cached attributes (actimeo), not under a lock as Lustre's:
 * a process too slow to reach them in that time would find them expired and ask again, one
 * RPC each. A hit on an expired answer halves how far ahead the directory is fetched, and
 * fetching restarts after that name; each fresh hit widens it by one again, up to statahead_max.
 */
export interface StataheadTunables {
  /** Names fetched ahead of the process, per directory (statahead_max; 0 turns statahead off). */
  max: number
  /** Names per batch RPC (statahead_batch_max). */
  batch: number
  /** Glimpse the fetched files' sizes too (statahead_agl). */
  agl: boolean
}

export const DEFAULT_STATAHEAD: StataheadTunables = { max: defaultOf(param('statahead_max')), batch: defaultOf(param('statahead_batch_max')), agl: defaultOf(param('statahead_agl')) === 1 }

/** Lookups in a row, each of the name after the last, before statahead starts. */
const START_AFTER = 2
/** Directories followed at once (past that, the one followed longest ago is forgotten). */
const MAX_DIRS = 64
/** Listings kept to follow (the latest ones), and the largest kept: past that, only numbered names are followed. */
const MAX_LISTINGS = 4
const MAX_LISTED_NAMES = 100_000

interface Batch {
  done: Promise<void>
  settled: boolean
  /** When its answers came (monotonic ms). */
  at: number
}

/** One directory's lookups, as statahead follows them. */
interface DirState {
  last: string
  /** Lookups in a row that named the name after the one before, in `order`. */
  streak: number
  order: NameSequence
  /** Names asked for (in sequence order) that no lookup has reached yet. */
  ahead: Map<string, Batch>
  /** The last name asked for. */
  tail?: string
  /** A batch found none of its names: the sequence ran out. */
  ended: boolean
  /** Names kept ahead: statahead_max, less while answers expire before the process reaches them. */
  window: number
}

export interface StataheadStats {
  batches: number
  names: number
  /** Lookups of a name statahead had asked for. */
  hits: number
  /** Answers not kept: the cache learnt something newer while they were on the way. */
  stale: number
  /** Hits whose answer had expired: statahead ran further ahead than the process got in actimeo. */
  expired: number
  failed: number
}

export class Statahead {
  /** Read with peek(): the first followed is the first forgotten, as the last listed is kept longest. */
  private readonly dirs = new LRUCache<number, DirState>({ max: MAX_DIRS })
  private readonly listings = new LRUCache<number, ListingOrder>({ max: MAX_LISTINGS })
  readonly stats: StataheadStats = { batches: 0, names: 0, hits: 0, stale: 0, expired: 0, failed: 0 }

  constructor(
    private readonly clock: Clock,
    private readonly mdc: Mdc,
    private readonly lov: Lov,
    private readonly cache: MetaCache,
    private readonly log: Logger,
    readonly tunables: StataheadTunables = { ...DEFAULT_STATAHEAD },
  ) {}

  /**
   * A lookup of `name` in `parent` is about to be answered. Returns the batch that is
   * fetching it, to wait for rather than ask again, when there is one still on the way.
   */
  access(parent: number, name: string): Promise<void> | undefined {
    // With no attribute cache (actimeo=0) nothing fetched ahead could be kept.
    if (this.tunables.max <= 0 || this.cache.ttlMs <= 0) return undefined
    const s = this.dirs.peek(parent)
    if (!s) {
      this.follow(parent, { last: name, streak: 0, order: NUMBERED, ahead: new Map(), ended: false, window: this.tunables.max })
      return undefined
    }
    const b = s.ahead.get(name)
    if (b) {
      this.stats.hits++
      // Names the process skipped are no longer ahead of it.
      for (const k of s.ahead.keys()) {
        s.ahead.delete(k)
        if (k === name) break
      }
      if (b.settled && this.clock.now() - b.at >= this.cache.ttlMs) {
        this.stats.expired++
        s.window = Math.max(1, s.window >> 1)
        s.ahead.clear()
        s.tail = undefined
      } else s.window = Math.min(this.tunables.max, s.window + 1)
    } else {
      const order = this.orderOf(parent, s, name)
      if (order !== s.order) {
        s.ahead.clear()
        s.tail = undefined
      }
      if (order) s.order = order
      else s.streak = -1
      s.ended = false
    }
    s.last = name
    s.streak++
    if (s.streak >= START_AFTER) this.fill(parent, s)
    return b && !b.settled ? b.done : undefined
  }

  /** The order in which `name` follows the last name looked up: the one followed so far, else the listing's, else the numbered one. */
  private orderOf(parent: number, s: DirState, name: string): NameSequence | undefined {
    if (s.order.follows(s.last, name)) return s.order
    const listing = this.listings.peek(parent)
    if (listing && listing !== s.order && listing.follows(s.last, name)) return listing
    if (s.order !== NUMBERED && NUMBERED.follows(s.last, name)) return NUMBERED
    return undefined
  }

  /**
   * A page of a listing of `dir` was read (`first`: the listing's start; a later page goes on
   * the listing kept): a process may now look its names up in that order.
   */
  listed(dir: number, entries: ReadonlyArray<{ name: string }>, first = true): void {
    const kept = this.listings.peek(dir)
    this.listings.delete(dir)
    const listing = first ? new ListingOrder() : kept
    if (this.tunables.max <= 0 || !listing || listing.length + entries.length > MAX_LISTED_NAMES) return
    listing.append(entries.map((e) => e.name))
    this.listings.set(dir, listing)
  }

  private follow(parent: number, s: DirState): void {
    this.dirs.set(parent, s)
  }

  /** Ask for batches until statahead_max names are ahead of the process. */
  private fill(parent: number, s: DirState): void {
    const window = Math.min(s.window, this.tunables.max)
    const batch = Math.min(this.tunables.batch, window)
    while (!s.ended && batch > 0 && s.ahead.size + batch <= window) {
      const names = s.order.after(s.tail ?? s.last, batch)
      if (!names.length) return
      s.tail = names[names.length - 1]
      const b: Batch = { settled: false, done: Promise.resolve(), at: 0 }
      b.done = this.fetch(parent, names, s).finally(() => {
        b.settled = true
        b.at = this.clock.now()
      })
      for (const n of names) s.ahead.set(n, b)
    }
  }

  private async fetch(parent: number, names: string[], s: DirState): Promise<void> {
    const w = this.cache.watch()
    this.stats.batches++
    this.stats.names += names.length
    try {
      const attrs = await this.mdc.batchLookup(parent, names)
      if (attrs.every((a) => !a)) s.ended = true
      // Sizes with bytes of our own still cached are about to change, and those with a stripe on
      // a lost OST would be wrong once it is back: those are not glimpsed.
      const files = this.tunables.agl
        ? attrs.filter((a): a is MdtAttr => !!a?.layout && a.type === 'reg' && !this.lov.cachedSize(a.fid, a.layout) && !this.lov.lost(a.layout))
        : []
      const glimpses = files.length ? await this.lov.glimpseMany(files.map((a) => ({ fid: a.fid, layout: a.layout! }))) : []
      const byFid = new Map(files.map((a, i) => [a.fid, glimpses[i]!]))
      const found = names.flatMap((name, i) => {
        const attr = attrs[i]
        return attr ? [{ name, attr, glimpse: byFid.get(attr.fid) }] : []
      })
      this.stats.stale += found.length - this.cache.prime(w, parent, found)
    } catch (e) {
      this.cache.unwatch(w)
      this.stats.failed++
      this.log.debug({ err: e, parent, first: names[0] }, 'statahead batch failed')
    }
  }
}
