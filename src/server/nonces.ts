import { LRUCache } from 'lru-cache'
import { AUTH_WINDOW_MS } from '../protocol/auth.js'

/**
 * The nonces of the requests accepted within the time window, so a captured request sent
 * again is refused. Bounded: past `cap` nonces the oldest is forgotten and the floor rises to
 * its timestamp, so a request signed at or before the floor is refused as too old: nothing
 * forgotten can come back, and under a flood the window only narrows.
 *
 * A timestamp ahead of the server's clock (the window allows skew both ways) raises the floor
 * only to when it was admitted: else a flood signed minutes ahead would lift the floor past the
 * clock, and every honest request would be refused until it caught up. Such a nonce, forgotten,
 * could be sent again until the floor passes its timestamp: only a client whose clock runs
 * ahead is exposed, by as much, and a resent change is still caught by its xid.
 */
export const MAX_NONCES = 200_000
/**
 * Expired nonces are dropped at most this often. Kept a second longer, a nonce costs memory,
 * never a refusal: the guard refuses its timestamp.
 */
const EXPIRE_EVERY_MS = 1000

/** A nonce's request: when it was signed (by the client's clock) and admitted (by this server's). */
interface Admitted {
  ts: number
  at: number
}

export class NonceCache {
  /**
   * Nonce -> its request's timestamps, in the order admitted (nearly time order: clients'
   * clocks differ a little); never reordered, as only has() and peek() read it. Not a Map
   * emptied from its front: V8 walks a Map's deleted entries until it rehashes, and past the
   * cap each request paid 26 us for it.
   */
  private readonly seen: LRUCache<string, Admitted>
  private floor = -Infinity
  private nextExpiry = -Infinity

  constructor(readonly cap = MAX_NONCES) {
    this.seen = new LRUCache({
      max: cap,
      dispose: ({ ts, at }, _nonce, reason) => {
        if (reason === 'evict') this.floor = Math.max(this.floor, Math.min(ts, at))
      },
    })
  }

  /** Remember `nonce`; false if it was seen, or is too old to be told apart from a forgotten one. */
  admit(nonce: string, ts: number, now: number): boolean {
    this.expire(now)
    if (ts <= this.floor || this.seen.has(nonce)) return false
    this.seen.set(nonce, { ts, at: now })
    return true
  }

  get size(): number {
    return this.seen.size
  }

  /** Requests signed at or before this are refused: the window's start, or the newest nonce forgotten past the cap. */
  get refusedUpTo(): number {
    return this.floor
  }

  /** Nonces from before the window need no memory: their timestamps are refused anyway. */
  private expire(now: number): void {
    if (now < this.nextExpiry) return
    this.nextExpiry = now + EXPIRE_EVERY_MS
    const limit = now - AUTH_WINDOW_MS
    const old: string[] = []
    for (const nonce of this.seen.rkeys()) {
      if (this.seen.peek(nonce)!.ts >= limit) break
      old.push(nonce)
    }
    for (const nonce of old) this.seen.delete(nonce)
    this.floor = Math.max(this.floor, limit)
  }
}
