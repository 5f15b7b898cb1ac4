import { LRUCache } from 'lru-cache'
import { CAPA_RENEW_MS, capaRenewable } from '../protocol/capa.js'
import { LpError } from '../protocol/errno.js'
import type { Capa } from '../protocol/ops.js'

/** Files whose capability a client keeps; past it the least recently used is dropped, and fetched again from the MDT if used. */
export const MAX_CAPAS = 16384

/**
 * A client's OST capabilities (protocol/capa.ts), by file: noted as layouts pass down to
 * the OSCs, looked up when a request leaves (a write-back RPC leaves long after its write).
 * One near its expiry, or refused by an OST as expired or missing, is fetched again from the
 * MDT (`renew`: a getattr) once. On a filesystem without a key none is ever noted: nothing
 * is sent, nothing renewed.
 */
export class CapaCache {
  /** The least recently used dropped past `max` (a Map emptied from its front walks the holes it leaves: 6 us per note past 16,384 files). */
  private readonly capas: LRUCache<number, Capa>
  private readonly renewing = new Map<number, Promise<Capa | undefined>>()

  constructor(
    private readonly renew: (fid: number) => Promise<Capa | undefined>,
    private readonly now: () => number = Date.now,
    max = MAX_CAPAS,
  ) {
    this.capas = new LRUCache({ max })
  }

  get size(): number {
    return this.capas.size
  }

  note(fid: number, capa: Capa | undefined): void {
    if (!capa) return
    const had = this.capas.peek(fid)
    // A later grant may be narrower (a lookup's read-only after an open's read-write): keep the wider while it lasts.
    if (had && had.ops === 'rw' && capa.ops === 'r' && had.expiry - this.now() > CAPA_RENEW_MS) return
    this.capas.set(fid, capa)
  }

  /** The capability to send for `fid`: renewed first when it is about to expire. */
  async current(fid: number): Promise<Capa | undefined> {
    const c = this.capas.get(fid)
    if (c && c.expiry - this.now() <= CAPA_RENEW_MS) return this.renewed(fid)
    return c
  }

  /** One fetch from the MDT however many requests of the file ask at once. */
  renewed(fid: number): Promise<Capa | undefined> {
    let p = this.renewing.get(fid)
    if (!p) {
      p = this.renew(fid)
        .then((c) => {
          this.capas.delete(fid)
          if (c) this.note(fid, c)
          return c
        })
        .finally(() => this.renewing.delete(fid))
      this.renewing.set(fid, p)
    }
    return p
  }

  /** Run `fn` with the capabilities of `fids`; refused by the OST for want of valid ones, once more with them renewed. */
  async with<T>(fids: readonly number[], fn: (capaOf: (fid: number) => Capa | undefined) => Promise<T>): Promise<T> {
    const uniq = [...new Set(fids)]
    const got = new Map(await Promise.all(uniq.map(async (f) => [f, await this.current(f)] as const)))
    try {
      return await fn((f) => got.get(f))
    } catch (e) {
      if (!(e instanceof LpError) || !capaRenewable(e)) throw e
      const fresh = new Map(await Promise.all(uniq.map(async (f) => [f, await this.renewed(f)] as const)))
      return fn((f) => fresh.get(f))
    }
  }
}
