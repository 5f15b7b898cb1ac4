/**
 * A fake cluster for unit tests of the client import: an RpcTransport whose NIDs are
 * scriptable nodes, serving fake targets that answer the way src/server/target/target.ts
 * does (connect, export handles and conn_cnt, transnos, last_committed, recovery with
 * replays and "replay done", eviction), with no network and no real time: everything is
 * settled through promises, and stamped with the test's ManualClock.
 */
import type { Clock } from '../../src/common/clock.js'
import { errnoOf } from '../../src/protocol/errno.js'
import { OPS, isOpName, type ConnectReply } from '../../src/protocol/ops.js'
import type { ReplyFlag, ReqBody, ReqHeader } from '../../src/protocol/wire.js'
import { TransportError, type RawReply, type RpcTransport } from '../../src/ptlrpc/transport.js'

const ENOTCONN = -errnoOf('ENOTCONN')
const EBUSY = -errnoOf('EBUSY')
const ENODEV = -errnoOf('ENODEV')

/** What a fake target answers (the transport adds the reply header around it). */
export interface FakeReply {
  status: number
  transno?: number
  body?: unknown
  bulk?: Buffer
  flags?: ReplyFlag[]
  error?: string
}

/** One request as it reached the network, and how it ended. */
export interface Sent {
  nid: string
  h: ReqHeader
  body: ReqBody
  bulk?: Buffer
  at: number
  /** 'reply <status>', or the TransportError kind; undefined while pending. */
  outcome?: string
  endedAt?: number
}

/**
 * One target's state, shared by whichever node serves it (the LUN of a failover pair).
 * Modifying requests get increasing transnos; `commit()` makes them durable; `restart()`
 * loses the uncommitted tail as a crash does.
 */
export class FakeTarget {
  replayable = true
  instance = 1
  lastTransno = 0
  lastCommitted = 0
  recovering = false
  /** Refuse every connect with EBUSY. */
  busy = false
  /** Commit each transaction as it executes (its reply already says it is committed). */
  syncWrites = false
  /** Replies of matching requests are held (the request executes first) until `releaseReplies()`. */
  holdReplies: ((h: ReqHeader) => boolean) | null = null
  /** The replay of these transnos fails; the client is evicted, as the real target does. */
  readonly rejectReplays = new Set<number>()
  /** A scripted answer; return undefined to answer normally. Runs after the export checks. */
  intercept: ((h: ReqHeader, body: ReqBody) => FakeReply | undefined) | null = null
  /** Connected clients: uuid -> export. */
  readonly exports = new Map<string, { handle: string; connCnt: number }>()
  /** Clients in last_rcvd (known durably): uuid -> handle. */
  readonly clients = new Map<string, string>()
  /** Clients this recovery waits for, and the ones that said "replay done". */
  readonly known = new Set<string>()
  readonly done = new Set<string>()
  /** Every execution, replays included, in order. */
  readonly executed: Array<{ op: string; xid: number; transno: number; replay: boolean; bulk: number }> = []
  private readonly saved = new Map<string, { transno: number; body: unknown }>()
  private recoveryWaiters: Array<() => void> = []
  private held: Array<{ h: ReqHeader; deliver: () => void }> = []
  private handles = 0

  constructor(readonly name = 'spfs-OST0001') {}

  /** Everything executed so far is on storage. */
  commit(upTo = this.lastTransno): void {
    this.lastCommitted = Math.max(this.lastCommitted, Math.min(upTo, this.lastTransno))
  }

  /**
   * A crash and restart: uncommitted transactions are lost, exports dropped. With `recover`
   * (failover mode) the clients in last_rcvd are waited for; without, they are forgotten and
   * come back as new (evicted) clients.
   */
  restart(o: { recover: boolean; lastCommitted?: number }): void {
    this.instance += 1
    if (o.lastCommitted !== undefined) this.lastCommitted = o.lastCommitted
    this.lastTransno = this.lastCommitted
    for (const [k, v] of this.saved) if (v.transno > this.lastCommitted) this.saved.delete(k)
    this.exports.clear()
    this.done.clear()
    this.known.clear()
    if (!o.recover || !this.replayable) this.clients.clear()
    for (const uuid of this.clients.keys()) this.known.add(uuid)
    this.recovering = this.known.size > 0
  }

  /** Recovery is over (all clients done, or the window expired): clients not done are evicted. */
  endRecovery(): void {
    for (const uuid of this.known) if (!this.done.has(uuid)) this.evict(uuid)
    this.recovering = false
    this.known.clear()
    for (const w of this.recoveryWaiters.splice(0)) w()
  }

  evict(uuid: string): void {
    this.exports.delete(uuid)
    this.clients.delete(uuid)
    this.known.delete(uuid)
  }

  /** Deliver the held replies (those of matching requests only, with `which`). */
  releaseReplies(which: (h: ReqHeader) => boolean = () => true): void {
    const now = this.held.filter((r) => which(r.h))
    this.held = this.held.filter((r) => !which(r.h))
    for (const r of now) r.deliver()
  }

  get heldReplies(): number {
    return this.held.length
  }

  private whenRecovered(): Promise<void> {
    if (!this.recovering) return Promise.resolve()
    return new Promise((r) => this.recoveryWaiters.push(r))
  }

  private nextHandle(): string {
    this.handles += 1
    return `${(this.instance * 1000 + this.handles).toString(16).padStart(16, '0')}`
  }

  /** Answer one request as the real target would; the reply header is stamped when it is built. */
  async handle(h: ReqHeader, body: ReqBody, bulk: Buffer | undefined): Promise<RawReply> {
    const r = await this.answer(h, body, bulk)
    const raw: RawReply = {
      header: {
        status: r.status,
        transno: r.transno ?? 0,
        lastCommitted: this.lastCommitted,
        flags: [...(this.recovering ? (['recovering'] as const) : []), ...(r.flags ?? [])],
        error: r.error,
      },
      body: r.body ?? {},
      bulk: r.bulk ? [r.bulk] : [],
    }
    if (!this.holdReplies?.(h)) return raw
    return new Promise((resolve) => this.held.push({ h, deliver: () => resolve(raw) }))
  }

  private async answer(h: ReqHeader, body: ReqBody, bulk: Buffer | undefined): Promise<FakeReply> {
    if (h.op === 'connect') return this.connect(h, body.a as { prev_handle?: string })
    const exp = this.exports.get(h.client)
    if (!exp || exp.handle !== h.handle) return { status: ENOTCONN, error: `${this.name}: client ${h.client} is not connected` }
    if (h.connCnt < exp.connCnt) return { status: ENOTCONN, flags: ['stale_conn'], error: 'request from an older connection' }
    const scripted = this.intercept?.(h, body)
    if (scripted) return scripted
    if (h.op === 'disconnect') {
      this.evict(h.client)
      return { status: 0 }
    }
    if (h.op === 'ping') {
      if (h.flags.includes('replay_done') && this.recovering) {
        this.done.add(h.client)
        await this.whenRecovered()
        if (!this.exports.has(h.client)) return { status: ENOTCONN, error: 'evicted during recovery' }
      }
      return { status: 0 }
    }
    if (!isOpName(h.op)) return { status: -errnoOf('EOPNOTSUPP') }
    if (h.flags.includes('replay')) {
      const transno = h.transno ?? 0
      if (transno <= this.lastCommitted) return { status: 0, transno, body: this.saved.get(`${h.client}:${h.xid}`)?.body ?? body.r }
      if (!this.recovering) return { status: ENOTCONN, error: `${this.name} is not in recovery` }
      // Replayed already by this instance (its reply was lost): answered as the first time.
      const again = this.saved.get(`${h.client}:${h.xid}`)
      if (again?.transno === transno) return { status: 0, transno, body: again.body }
      if (this.rejectReplays.has(transno)) {
        this.evict(h.client)
        return { status: -errnoOf('EEXIST'), error: `replay of transno ${transno} failed` }
      }
      this.executed.push({ op: h.op, xid: h.xid, transno, replay: true, bulk: bulk?.length ?? 0 })
      this.lastTransno = Math.max(this.lastTransno, transno)
      this.saved.set(`${h.client}:${h.xid}`, { transno, body: body.r })
      return { status: 0, transno, body: body.r }
    }
    if (this.recovering) {
      await this.whenRecovered()
      if (this.exports.get(h.client)?.handle !== h.handle) return { status: ENOTCONN, error: 'evicted during recovery' }
    }
    if (!OPS[h.op].modifying) return { status: 0, body: {} }
    const saved = h.flags.includes('resend') ? this.saved.get(`${h.client}:${h.xid}`) : undefined
    if (saved) return { status: 0, transno: saved.transno, body: saved.body }
    const transno = ++this.lastTransno
    if (this.syncWrites) this.commit()
    const reply = { xid: h.xid, transno }
    this.executed.push({ op: h.op, xid: h.xid, transno, replay: false, bulk: bulk?.length ?? 0 })
    this.saved.set(`${h.client}:${h.xid}`, { transno, body: reply })
    return { status: 0, transno, body: reply }
  }

  private connect(h: ReqHeader, args: { prev_handle?: string }): FakeReply {
    const ok = (handle: string, recovering: boolean): FakeReply => {
      const body: ConnectReply = {
        handle,
        instance: this.instance,
        replayable: this.replayable,
        recovering,
        last_committed: this.lastCommitted,
        target_uuid: `${this.name}_UUID`,
      }
      return { status: 0, body }
    }
    if (this.busy) return { status: EBUSY, error: `${this.name}: busy` }
    if (this.recovering) {
      const handle = this.clients.get(h.client)
      if (handle && this.known.has(h.client)) {
        this.exports.set(h.client, { handle, connCnt: h.connCnt })
        return ok(handle, true)
      }
      return { status: EBUSY, error: `${this.name}: Denying connection for new client ${h.client}, waiting for ${this.known.size} known clients` }
    }
    const existing = this.exports.get(h.client)
    if (existing && args.prev_handle === existing.handle) {
      existing.connCnt = h.connCnt
      return ok(existing.handle, false)
    }
    const handle = this.nextHandle()
    this.exports.set(h.client, { handle, connCnt: h.connCnt })
    if (this.replayable) this.clients.set(h.client, handle)
    return ok(handle, false)
  }
}

/** up: serves its target; down: refuses at once (ECONNREFUSED); hung: never answers; absent: HTTP 404, no such target here. */
export type NodeMode = 'up' | 'down' | 'hung' | 'absent'

interface Pending {
  fail: (e: TransportError) => void
}

export class FakeNode {
  mode: NodeMode = 'down'
  target: FakeTarget | null = null
  /** The node's HTTP front refuses matching requests before the target sees them (e.g. 400 EINVAL). */
  refuse: ((h: ReqHeader) => TransportError | undefined) | null = null
  readonly pending = new Set<Pending>()

  constructor(readonly nid: string) {}

  up(target?: FakeTarget): this {
    if (target) this.target = target
    if (!this.target) throw new Error(`${this.nid}: no target to serve`)
    this.mode = 'up'
    return this
  }

  /** Crash or unplug: requests in flight fail with a reset, new ones are refused. */
  down(): this {
    this.mode = 'down'
    for (const p of [...this.pending]) p.fail(new TransportError('conn', `ECONNRESET: ${this.nid} reset the connection`))
    return this
  }

  /** Silence: nothing in flight or new is answered; only the sender's deadline ends a request. */
  hang(): this {
    this.mode = 'hung'
    return this
  }

  absent(): this {
    this.mode = 'absent'
    return this
  }
}

/** The network: every NID's node, and a record of all that was sent. */
export class FakeNet implements RpcTransport {
  readonly sent: Sent[] = []
  readonly resets: string[] = []
  private readonly nodes = new Map<string, FakeNode>()

  constructor(private readonly clock: Clock) {}

  node(nid: string): FakeNode {
    let n = this.nodes.get(nid)
    if (!n) this.nodes.set(nid, (n = new FakeNode(nid)))
    return n
  }

  /** Requests of one op (and, optionally, to one NID). */
  ops(op: string, nid?: string): Sent[] {
    return this.sent.filter((s) => s.h.op === op && (nid === undefined || s.nid === nid))
  }

  /** Requests that are neither connects nor pings. */
  get rpcs(): Sent[] {
    return this.sent.filter((s) => s.h.op !== 'connect' && s.h.op !== 'ping')
  }

  send(nid: string, h: ReqHeader, body: ReqBody, bulk: Uint8Array | undefined, signal: AbortSignal): Promise<RawReply> {
    const s: Sent = { nid, h, body, bulk: bulk ? Buffer.from(bulk) : undefined, at: this.clock.now() }
    this.sent.push(s)
    const node = this.node(nid)
    return new Promise<RawReply>((resolve, reject) => {
      const end = (outcome: string, fn: () => void) => {
        if (s.outcome) return
        s.outcome = outcome
        s.endedAt = this.clock.now()
        node.pending.delete(p)
        signal.removeEventListener('abort', onAbort)
        fn()
      }
      const p: Pending = { fail: (e) => end(e.kind, () => reject(e)) }
      const onAbort = () => p.fail(new TransportError('timeout', String((signal.reason as Error | undefined)?.message ?? 'aborted')))
      if (signal.aborted) return onAbort()
      signal.addEventListener('abort', onAbort, { once: true })
      switch (node.mode) {
        case 'down':
          return p.fail(new TransportError('conn', `ECONNREFUSED: connect to ${nid} refused`))
        case 'absent':
          return p.fail(new TransportError('refused', `target '${h.target}' is not served by this node`, 404, ENODEV))
        case 'hung':
          node.pending.add(p)
          return
        case 'up': {
          const refused = node.refuse?.(h)
          if (refused) return p.fail(refused)
          node.pending.add(p)
          const t = node.target!
          void t.handle(h, body, s.bulk).then((raw) => {
            // A node that went silent or down meanwhile delivers nothing.
            if (node.mode !== 'up' || node.target !== t) return
            end(`reply ${raw.header.status}`, () => resolve(raw))
          })
        }
      }
    })
  }

  reset(nid: string): void {
    this.resets.push(nid)
  }

  async close(): Promise<void> {}
}
