import type { Clock, Timer } from '../common/clock.js'
import type { Logger } from '../common/log.js'
import { LpError } from '../protocol/errno.js'
import { MAX_NIOBUFS } from '../protocol/ops.js'
import { ExtentMap, type Extent } from './extents.js'
import type { Osc } from './osc.js'

/**
 * The write-back cache of one OST (Lustre's osc dirty pages): writes land here and return;
 * dirty bytes of an object leave as RPCs of up to max_pages_per_rpc, contiguous runs or, for
 * scattered writes, up to MAX_NIOBUFS runs in one RPC; at most max_rpcs_in_flight at a time;
 * the writer blocks (never fails) once max_dirty_mb is cached.
 * A failed write RPC leaves its error with the file, for its next write, fsync or close.
 */
export interface WritebackTunables {
  maxRpcBytes: number
  maxRpcsInFlight: number
  maxDirtyBytes: number
  /** A partial run is sent once it has waited this long. */
  dirtyExpireMs: number
}

interface ObjCache {
  fid: number
  stripe: number
  map: ExtentMap
  /** flush() asked for everything of this object to go now. */
  urgent: boolean
}

export class OscWriteback {
  private readonly objs = new Map<string, ObjCache>()
  /** Cached bytes, dirty or in flight. */
  cached = 0
  inflight = 0
  private readonly errors = new Map<number, LpError>()
  /** Highest transno of each file's writes on this OST, to know what a failout loses. */
  private readonly written = new Map<number, number>()
  /** Woken whenever an RPC completes or cached data is dropped. */
  private waiters: Array<() => void> = []
  /** Writers waiting for budget: partial runs go out at once so that they can proceed. */
  private blocked = 0
  private timer: Timer | null = null

  constructor(
    readonly osc: Osc,
    private readonly tun: WritebackTunables,
    private readonly clock: Clock,
    private readonly log: Logger,
  ) {
    osc.imp.on('invalidate', (reason: string) => this.invalidated(reason))
    // Every advance of last_committed, not only those that free replay-list bytes: a failout
    // import keeps no replay list, and its map would otherwise only ever grow.
    osc.imp.on('last_committed', (lc: number) => {
      for (const [fid, t] of this.written) if (t <= lc) this.written.delete(fid)
    })
  }

  /** Files with acknowledged writes the OST has not committed yet: what losing it now would cost. */
  get uncommittedFiles(): number {
    return this.written.size
  }

  get tunables(): Readonly<WritebackTunables> {
    return this.tun
  }

  /** set_param: a new limit applies at once, to waiting writers and to the runs already cached. */
  retune(t: Partial<WritebackTunables>): void {
    Object.assign(this.tun, t)
    this.wake()
    this.pump()
  }

  private changed(): Promise<void> {
    return new Promise((r) => this.waiters.push(r))
  }

  private wake(): void {
    for (const w of this.waiters.splice(0)) w()
  }

  private key(fid: number, stripe: number): string {
    return `${fid}.${stripe}`
  }

  async write(fid: number, stripe: number, off: number, data: Buffer, mtime: number): Promise<void> {
    // Deactivated or failed out: the write itself fails, at once (SEMANTICS 6 and 7).
    if (this.osc.imp.invalid) throw new LpError('EIO', `${this.osc.imp.target} is ${this.osc.imp.deactive ? 'deactivated' : 'unavailable (failout)'}`)
    while (this.cached + data.length > this.tun.maxDirtyBytes && this.cached > 0) {
      this.blocked += 1
      this.pump()
      await this.changed()
      this.blocked -= 1
    }
    const k = this.key(fid, stripe)
    let o = this.objs.get(k)
    if (!o) this.objs.set(k, (o = { fid, stripe, map: new ExtentMap(), urgent: false }))
    this.cached += o.map.insert(off, data, this.clock.now(), mtime)
    this.pump()
  }

  /** Send every RPC that is ready, as long as the in-flight limit allows. */
  private pump(): void {
    const now = this.clock.now()
    let waiting = false
    const max = this.tun.maxRpcBytes
    for (const o of this.objs.values()) {
      while (this.inflight < this.tun.maxRpcsInFlight) {
        // A full RPC's worth, in one run or many, goes now; so does any run once it has waited long enough.
        const full = o.map.dirtyBytes >= max
        const es = o.map.take(max, MAX_NIOBUFS, (x) => full || o.urgent || now - x.since >= this.tun.dirtyExpireMs || this.blocked > 0)
        if (!es.length) break
        this.send(o, es)
      }
      if (o.map.dirtyBytes) waiting = true
    }
    if (waiting && !this.timer) {
      this.timer = this.clock.setTimeout(() => {
        this.timer = null
        this.pump()
      }, this.tun.dirtyExpireMs)
    }
  }

  private send(o: ObjCache, es: Extent[]): void {
    this.inflight += 1
    const first = es[0]!
    const niobufs = es.length > 1 ? es.map((e) => ({ offset: e.off, length: e.len })) : undefined
    this.osc.write(o.fid, o.stripe, first.off, es.flatMap((e) => e.chunks), Math.max(...es.map((e) => e.mtime)), { niobufs }).then(
      ({ transno }) => {
        if (transno > Math.max(this.written.get(o.fid) ?? 0, this.osc.imp.peerCommitted)) this.written.set(o.fid, transno)
        this.done(o, es)
      },
      (err) => {
        const len = es.reduce((n, e) => n + e.len, 0)
        this.log.warn({ fid: o.fid, stripe: o.stripe, off: first.off, len, runs: es.length, err: (err as Error).message }, 'write-back failed')
        this.fail(o.fid, err instanceof LpError ? err : new LpError('EIO', String(err)))
        this.done(o, es)
      },
    )
  }

  private done(o: ObjCache, es: Extent[]): void {
    this.inflight -= 1
    for (const e of es) {
      o.map.remove(e)
      this.cached -= e.len
    }
    if (o.map.empty) this.objs.delete(this.key(o.fid, o.stripe))
    this.wake()
    this.pump()
  }

  /** Errors surface as EIO to the application, except those with their own meaning. */
  private fail(fid: number, e: LpError): void {
    if (!this.errors.has(fid)) this.errors.set(fid, e.code === 'ENOSPC' || e.code === 'EDQUOT' || e.code === 'EFBIG' ? e : new LpError('EIO', e.message))
  }

  /** Everything cached for `fid` is on the OST (or failed); resolves when nothing of it is left. */
  async flush(fid: number): Promise<void> {
    const mine = () => [...this.objs.values()].filter((o) => o.fid === fid)
    for (const o of mine()) o.urgent = true
    this.pump()
    while (mine().length) await this.changed()
  }

  /** Take (and clear) the error of a file's write-back, if any. */
  takeError(fid: number): LpError | undefined {
    const e = this.errors.get(fid)
    this.errors.delete(fid)
    return e
  }

  /** Overlay cached bytes of an object on what the OST returned. */
  overlay(fid: number, stripe: number, off: number, buf: Buffer): void {
    this.objs.get(this.key(fid, stripe))?.map.overlay(off, buf)
  }

  covers(fid: number, stripe: number, off: number, len: number): boolean {
    return this.objs.get(this.key(fid, stripe))?.map.covers(off, len) ?? false
  }

  /** End (object offset) of the cached bytes of an object, 0 if none. */
  cachedEnd(fid: number, stripe: number): number {
    return this.objs.get(this.key(fid, stripe))?.map.end ?? 0
  }

  /**
   * The import was invalidated (evicted, failed out, deactivated): cached data for it is
   * lost, and so are acknowledged writes it had not committed. Every file concerned learns
   * it at its next write, fsync or close.
   */
  private invalidated(reason: string): void {
    const committed = this.osc.imp.peerCommitted
    for (const o of [...this.objs.values()]) {
      const lost = o.map.dropDirty()
      if (lost) this.fail(o.fid, new LpError('EIO', `${this.osc.imp.target}: ${reason}`))
      this.cached -= lost
      if (o.map.empty) this.objs.delete(this.key(o.fid, o.stripe))
    }
    for (const [fid, transno] of this.written) {
      if (transno > committed) this.fail(fid, new LpError('EIO', `${this.osc.imp.target}: ${reason}: acknowledged writes were not committed`))
      this.written.delete(fid)
    }
    this.wake()
  }
}
