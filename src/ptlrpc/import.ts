import { EventEmitter } from 'node:events'
import type { Logger } from '../common/log.js'
import { totalLength } from '../common/chunks.js'
import type { Timer } from '../common/clock.js'
import { LpError, errnoOf } from '../protocol/errno.js'
import { OPS, type ConnectReply, type OpName } from '../protocol/ops.js'
import type { Bulk, ReqBody, ReqFlag, ReqHeader } from '../protocol/wire.js'
import type { PtlrpcClient } from './client.js'
import { PtlRequest, type RpcReply } from './request.js'
import { ImportStats } from './stats.js'
import { TransportError, type Lane, type RawReply, type Route } from './transport.js'

/**
 * One import: this client's connection to one target (Lustre's obd_import). It owns the
 * connection list and its selection rule, the state machine of SEMANTICS section 1, the
 * request gate (section 3), the replay list and resends (section 4), and the pinger.
 */
export type ImportState =
  | 'NEW'
  | 'DISCONN'
  | 'CONNECTING'
  | 'REPLAY'
  | 'REPLAY_LOCKS'
  | 'REPLAY_WAIT'
  | 'RECOVER'
  | 'FULL'
  | 'EVICTED'
  | 'IDLE'
  | 'CLOSED'

export interface Connection {
  nid: string
  /** Monotonic ms of the last attempt; -Infinity when never tried. */
  lastTry: number
  /** Tried since the last successful connect. */
  tried: boolean
}

export interface ImportOptions {
  client: PtlrpcClient
  /** Target name, e.g. spfs-OST0001. */
  target: string
  /** Device name, e.g. spfs-OST0001-osc-<id>. */
  name: string
  /** Primary NID first, then failover NIDs. */
  nids: string[]
  log: Logger
}

export interface RequestOptions {
  bulk?: Bulk
  /** Fail with EAGAIN instead of waiting when the import is not FULL (statfs for df, pings). */
  noDelay?: boolean
}

const ENOTCONN = errnoOf('ENOTCONN')
const ENODEV = errnoOf('ENODEV')
const EPROTO = errnoOf('EPROTO')
const HISTORY = 16

class ConnectionLost extends Error {}
class ReplayRejected extends Error {}

/** The peer understood and refused the request itself (404 is "no such target here", 503 "not now"): a resend will not do better. */
function refusal(e: unknown): e is TransportError {
  return e instanceof TransportError && e.kind === 'refused' && e.code !== 404 && e.code !== 503
}

/**
 * The peer did not answer (connection refused or reset, silence): this import's connections to it are
 * dropped so the next attempt dials afresh. One that answered, even with a refusal, keeps
 * them: the node is alive and they still work.
 */
function unanswered(e: unknown): boolean {
  return !(e instanceof TransportError && e.kind === 'refused')
}

export class Import extends EventEmitter {
  readonly target: string
  readonly name: string
  readonly conns: Connection[]
  state: ImportState = 'NEW'
  readonly history: Array<{ state: ImportState; time: number }> = []
  invalid = false
  deactive = false
  replayable = true
  generation = 0
  connCnt = 0
  /** Highest last_committed the target has told us. */
  peerCommitted = 0
  lastReplayTransno = 0
  current: Connection | null = null
  remoteHandle: string | null = null
  instance = 0
  connectionAttempts = 0
  /** Status of the last connect a target answered (EBUSY: it is in recovery, not gone). */
  lastConnectStatus = 0
  /** Why the last connect failed (a refusal, or the transport's error: a TLS handshake's, say). */
  lastConnectError: string | null = null
  timeouts = 0
  /** Requests kept for replay (answered with a transno above peerCommitted), by transno. */
  readonly replayList: PtlRequest[] = []
  keptBytes = 0
  readonly stats: ImportStats
  private readonly active = new Set<PtlRequest>()
  private delayed: PtlRequest[] = []
  private recovering = false
  private cycles = 0
  private attemptsThisCycle = 0
  private wake: (() => void) | null = null
  private pinger: Timer | null = null
  /** The recovery RPC on the wire: an invalidation aborts it (what was reported lost is not replayed). */
  private recoveryRpc: AbortController | null = null
  /** Callers of whenCommitted still waiting: like kept requests, they want last_committed soon. */
  private commitWaits = 0
  private lastActivity = 0
  /** Set by close() before its disconnect leaves: from then on nothing reconnects (a connect would give the target a new export, kept in its last_rcvd). */
  private closing: Promise<void> | null = null
  /** The connect on the wire: close() waits for it, as it may yet make an export to disconnect. */
  private connecting: Promise<ConnectReply | null> | null = null
  private readonly c: PtlrpcClient
  private readonly log: Logger

  constructor(o: ImportOptions) {
    super()
    this.c = o.client
    this.target = o.target
    this.name = o.name
    this.conns = o.nids.map((nid) => ({ nid, lastTry: -Infinity, tried: false }))
    this.log = o.log.child({ target: o.target })
    this.stats = new ImportStats(() => this.c.clock.now())
    this.history.push({ state: 'NEW', time: this.c.clock.wallNow() })
  }

  // ---- public surface ----

  /** Start connecting (NEW -> CONNECTING); returns at once. */
  connect(): void {
    if (this.state === 'NEW') void this.recoverLoop()
  }

  /** Resolve when FULL; reject if the import is closed first. */
  whenFull(): Promise<void> {
    if (this.state === 'FULL') return Promise.resolve()
    return new Promise((resolve, reject) => {
      const on = (s: ImportState) => {
        if (s === 'FULL') resolve()
        else if (s === 'CLOSED') reject(new LpError('ESHUTDOWN', `${this.target}: import closed`))
        else return
        this.off('state', on)
      }
      this.on('state', on)
    })
  }

  /**
   * Resolve once the target's last_committed reaches `transno`; reject with EIO if the import
   * is invalidated or closed first (what it had not committed is then lost).
   */
  whenCommitted(transno: number): Promise<void> {
    if (this.peerCommitted >= transno) return Promise.resolve()
    if (this.invalid || this.state === 'CLOSED') return Promise.reject(new LpError('EIO', `${this.target}: transno ${transno} not committed: import is ${this.invalid ? 'invalid' : 'closed'}`))
    return new Promise((resolve, reject) => {
      const end = () => {
        this.commitWaits -= 1
        this.off('last_committed', onCommit)
        this.off('invalidate', onLost)
        this.off('state', onState)
      }
      const onCommit = () => {
        if (this.peerCommitted < transno) return
        end()
        resolve()
      }
      const onLost = (why: string) => {
        end()
        reject(new LpError('EIO', `${this.target}: transno ${transno} not committed: ${why}`))
      }
      const onState = (s: ImportState) => {
        if (s === 'CLOSED') onLost('import closed')
      }
      this.on('last_committed', onCommit)
      this.on('invalidate', onLost)
      this.on('state', onState)
      // A commit is now expected: ask for it soon, as for kept requests.
      if (this.commitWaits++ === 0 && this.state === 'FULL') this.schedulePing()
    })
  }

  get inflight(): number {
    let n = 0
    for (const r of this.active) if (r.phase === 'inflight') n++
    return n
  }

  get delayedCount(): number {
    return this.delayed.length + [...this.active].filter((r) => r.phase === 'resend').length
  }

  get currentNid(): string | undefined {
    return this.current?.nid
  }

  /** Monotonic ms of the last request sent or answered. */
  get lastActive(): number {
    return this.lastActivity
  }

  request<B = unknown>(op: OpName, args: unknown, opts: RequestOptions = {}): Promise<RpcReply<B>> {
    const req = new PtlRequest(this.c.nextXid(), op, args, opts.bulk, this.generation, OPS[op].modifying, !!opts.noDelay)
    this.submit(req)
    return req.done as Promise<RpcReply<B>>
  }

  // ---- the request gate (SEMANTICS section 3) ----

  private submit(req: PtlRequest): void {
    if (this.state === 'CLOSED' || this.state === 'NEW') return req.reject(new LpError('EIO', `${this.target}: import is ${this.state}`))
    if (this.invalid) return req.reject(new LpError('ESHUTDOWN', `${this.target}: import is ${this.deactive ? 'deactivated' : 'invalid'}`))
    if (req.generation < this.generation) return req.reject(new LpError('EIO', `${this.target}: request from before an invalidation`))
    if (this.state === 'FULL') return this.dispatch(req)
    if (req.noDelay) return req.reject(new LpError('EAGAIN', `${this.target}: import is ${this.state}`))
    req.phase = 'delayed'
    this.delayed.push(req)
  }

  /** The ptlrpc header of a request on the current connection. */
  private header(xid: number, op: OpName, flags: ReqFlag[] = [], transno?: number): ReqHeader {
    return {
      target: this.target,
      op,
      client: this.c.uuid,
      handle: this.remoteHandle ?? undefined,
      connCnt: this.connCnt,
      xid,
      lastXid: this.lastXid(),
      flags,
      transno,
    }
  }

  /** Every xid up to this one has its reply (the target may drop their saved replies). */
  private lastXid(): number {
    let min = Infinity
    for (const r of this.active) if (r.xid < min) min = r.xid
    for (const r of this.delayed) if (r.xid < min) min = r.xid
    return min === Infinity ? this.c.lastXid : min - 1
  }

  private dispatch(req: PtlRequest): void {
    const conn = this.current!
    req.phase = 'inflight'
    req.connCnt = this.connCnt
    this.active.add(req)
    const flags: ReqFlag[] = req.sent ? ['resend'] : []
    if (req.sent) this.stats.resent()
    req.sent = true
    const ac = new AbortController()
    req.abort = ac
    req.sentAt = this.c.clock.now()
    this.lastActivity = req.sentAt
    this.armDeadline(req, conn)
    const h = this.header(req.xid, req.op, flags)
    this.c.transport.send(conn.nid, h, { a: req.args }, req.bulk, ac.signal, this.route(req.op === 'ping' ? 'ctl' : 'io')).then(
      (raw) => this.onReply(req, raw),
      (e) => this.onSendError(req, e as Error),
    )
  }

  /**
   * Past its deadline a request is not failed outright: a ping with a short deadline asks
   * whether the peer is alive; only a missed ping fails the import (decided question 2).
   */
  private armDeadline(req: PtlRequest, conn: Connection): void {
    const connCnt = req.connCnt
    // The ping speaks for the connection it went on: if the request was resent meanwhile, it has its own deadline.
    const waiting = () => req.phase === 'inflight' && req.connCnt === connCnt
    req.deadline = this.c.clock.setTimeout(() => {
      if (req.phase !== 'inflight') return
      this.timeouts += 1
      this.log.info({ xid: req.xid, op: req.op, nid: conn.nid }, `${this.target}: request x${req.xid} past its deadline, checking the peer with a ping`)
      this.livenessPing(conn).then(
        () => {
          if (waiting()) this.armDeadline(req, conn)
        },
        (e) => {
          if (!waiting()) return
          this.failConnection(connCnt, `request x${req.xid} (${req.op}) timed out and the ping failed: ${(e as Error).message}`)
        },
      )
    }, this.c.tunables.requestTimeoutMs)
  }

  /** This import's own connections: a failure that resets them leaves other imports' alone. */
  private route(lane: Lane): Route {
    return { owner: this.name, lane }
  }

  /** A control RPC (connect, ping, disconnect) with a deadline on the import's clock (AbortSignal.timeout would ignore an injected clock). */
  private async sendWithin(nid: string, h: ReqHeader, body: ReqBody, ms: number): Promise<RawReply> {
    const ac = new AbortController()
    const t = this.c.clock.setTimeout(() => ac.abort(new Error(`no answer within ${ms} ms`)), ms)
    try {
      return await this.c.transport.send(nid, h, body, undefined, ac.signal, this.route('ctl'))
    } finally {
      t.cancel()
    }
  }

  private async livenessPing(conn: Connection): Promise<void> {
    const raw = await this.sendWithin(conn.nid, this.header(this.c.nextXid(), 'ping'), { a: {} }, this.c.tunables.pingTimeoutMs)
    if (raw.header.status !== 0) throw new Error(`ping answered ${raw.header.status}: ${raw.header.error ?? ''}`)
  }

  private onReply(req: PtlRequest, raw: RawReply): void {
    if (req.phase !== 'inflight') return
    const status = raw.header.status
    if (status === -ENOTCONN || status === -ENODEV || raw.header.flags.includes('stale_conn')) {
      // The target does not know this connection (restarted, moved, evicted us): reconnect and resend.
      this.retry(req, `${req.op} x${req.xid} answered ${status === -ENODEV ? 'ENODEV' : 'ENOTCONN'}: ${raw.header.error ?? ''}`, false)
      return
    }
    this.complete(req, raw)
  }

  private onSendError(req: PtlRequest, e: Error): void {
    if (req.phase !== 'inflight') return
    if (refusal(e)) {
      this.finish(req)
      req.reject(LpError.fromStatus(e.status ?? -EPROTO, e.message))
      return
    }
    this.retry(req, `${req.op} x${req.xid} to ${this.current?.nid}: ${e.message}`, unanswered(e))
  }

  /**
   * No usable answer: the request waits to be resent. If it failed on the current connection
   * that connection is lost; if on an older one, the import already reconnected and the
   * request goes out again at once.
   */
  private retry(req: PtlRequest, why: string, dropConnections: boolean): void {
    this.requeue(req)
    this.failConnection(req.connCnt, why, dropConnections)
    // Closing: the target may have dropped our export already; what waits is failed by close().
    if (this.state === 'FULL' && !this.closing) this.dispatch(req)
    else this.dropNoDelay(req)
  }

  /** A "no delay" request (statfs for df, a ping) fails with EAGAIN rather than wait to be resent (section 3). */
  private dropNoDelay(req: PtlRequest): void {
    if (!req.noDelay || req.phase !== 'resend') return
    this.finish(req)
    req.reject(new LpError('EAGAIN', `${this.target}: import is ${this.state}`))
  }

  private requeue(req: PtlRequest): void {
    req.stopTimers()
    req.abort?.abort()
    req.phase = 'resend'
  }

  private finish(req: PtlRequest): void {
    req.stopTimers()
    req.phase = 'done'
    this.active.delete(req)
    this.lastActivity = this.c.clock.now()
  }

  private complete(req: PtlRequest, raw: RawReply): void {
    this.finish(req)
    const ok = raw.header.status === 0
    this.stats.answer(req.op, this.c.clock.now() - req.sentAt, ok ? (req.op === 'ost_read' ? totalLength(raw.bulk) : req.bytes) : undefined)
    const { status, transno, lastCommitted } = raw.header
    if (status === 0 && transno > 0) {
      req.transno = transno
      req.reply = raw.body
      if (this.replayable && transno > Math.max(this.peerCommitted, lastCommitted)) this.keep(req)
    }
    this.committed(lastCommitted)
    if (status !== 0) req.reject(LpError.fromStatus(status, raw.header.error))
    else req.resolve({ body: raw.body, bulk: raw.bulk, transno })
  }

  private keep(req: PtlRequest): void {
    let i = this.replayList.length
    while (i > 0 && this.replayList[i - 1]!.transno > req.transno) i--
    this.replayList.splice(i, 0, req)
    this.keptBytes += req.bytes
    this.log.trace({ xid: req.xid, transno: req.transno }, 'kept for replay')
    // A commit is now expected: bring the next ping forward to learn it (Lustre's ptlrpc_pinger_commit_expected).
    if (this.replayList.length === 1 && this.state === 'FULL') this.schedulePing()
  }

  /** The target says everything up to `lc` is on its storage: free what replay no longer needs. */
  private committed(lc: number): void {
    if (lc <= this.peerCommitted) return
    this.peerCommitted = lc
    let n = 0
    let freed = 0
    while (n < this.replayList.length && this.replayList[n]!.transno <= lc) freed += this.replayList[n++]!.bytes
    if (n) {
      this.replayList.splice(0, n)
      this.keptBytes -= freed
      this.emit('committed', freed)
    }
    // Also without a replay list (failout): the layers above forget what is now safe.
    this.emit('last_committed', lc)
  }

  // ---- losing and regaining the connection ----

  /**
   * The connection of `connCnt` failed. Failures of an older connection cause no second
   * reconnect. In failover mode everything waits; a non-replayable (failout) import is
   * invalidated at once.
   */
  private failConnection(connCnt: number, why: string, dropConnections = true): void {
    if (connCnt !== this.connCnt || this.state !== 'FULL' || this.closing) return
    const nid = this.current?.nid
    const fate = this.replayable ? 'will wait for recovery to complete' : 'will fail'
    this.log.warn({ nid, why }, `${this.target}: Connection to ${this.target} (at ${nid}) was lost; in progress operations using this service ${fate}`)
    this.disconnect(dropConnections)
    if (!this.replayable) this.invalidate('connection lost (failout)')
    void this.recoverLoop()
  }

  /** FULL -> DISCONN: what is in flight waits to be resent (a "no delay" request fails). */
  private disconnect(dropConnections: boolean): void {
    const nid = this.current?.nid
    if (nid && dropConnections) this.c.transport.reset(nid, this.name)
    for (const r of this.active) if (r.phase === 'inflight') this.requeue(r)
    this.setState('DISCONN')
    for (const r of [...this.active]) this.dropNoDelay(r)
  }

  /**
   * Imperative recovery: the MGS says the target restarted as `instance` at `nid`. An import
   * connected to an older instance does not wait for a timeout to notice: it goes to DISCONN
   * at once (its requests wait to be resent) and reconnects to `nid` first (Lustre's
   * ptlrpc_recover_import). Returns whether the notice concerned it.
   */
  recoverTo(nid: string, instance: number): boolean {
    // An instance we already know did not restart: a configuration change, not a recovery.
    if (this.deactive || this.closing || this.instance >= instance) return false
    this.log.info({ nid, instance }, `${this.target}: imperative recovery: instance ${instance} serves at ${nid}; reconnecting now`)
    this.kick(nid)
    if (this.state !== 'FULL') return true
    // The old instance is gone: a failout import learns at the reconnect whether it was evicted.
    this.disconnect(true)
    void this.recoverLoop()
    return true
  }

  private setState(s: ImportState): void {
    // CLOSED is final: a recovery still running when the import was closed must not revive it.
    if (this.state === s || this.state === 'CLOSED') return
    this.state = s
    this.history.push({ state: s, time: this.c.clock.wallNow() })
    if (this.history.length > HISTORY) this.history.shift()
    this.stats.state(s)
    this.log.debug({ state: s }, `${this.target}: import ${s}`)
    this.emit('state', s)
    if (s === 'FULL') this.schedulePing()
    else {
      this.pinger?.cancel()
      this.pinger = null
    }
  }

  /**
   * The MGS's configuration names other NIDs for the target (tunefs, then --writeconf): new
   * ones join the connection list, dropped ones leave it, except the one in use (Lustre's
   * del_conn refuses the active connection too); it goes at the next change.
   */
  setConnections(nids: string[]): void {
    const kept = this.conns.filter((c) => nids.includes(c.nid) || (c === this.current && this.state === 'FULL'))
    const added = nids.filter((nid) => !kept.some((c) => c.nid === nid))
    if (!added.length && kept.length === this.conns.length) return
    this.conns.splice(0, this.conns.length, ...kept, ...added.map((nid) => ({ nid, lastTry: -Infinity, tried: false })))
    this.log.info({ nids: this.conns.map((c) => c.nid) }, `${this.target}: connection list now ${this.conns.map((c) => c.nid).join(', ')} (MGS configuration)`)
  }

  /** First connection not tried since the last success; once all were, the least recently tried. */
  pickConnection(): Connection {
    const fresh = this.conns.find((c) => !c.tried)
    if (fresh) return fresh
    return this.conns.reduce((a, b) => (b.lastTry < a.lastTry ? b : a))
  }

  /** Interrupt a pause between connection cycles (imperative recovery, activate). */
  kick(nid?: string): void {
    if (nid) {
      const i = this.conns.findIndex((c) => c.nid === nid)
      // A NID we did not know (a target started on a new node) joins the list, as in Lustre.
      if (i < 0) this.conns.unshift({ nid, lastTry: -Infinity, tried: false })
      else if (i > 0) this.conns.unshift(...this.conns.splice(i, 1))
      this.conns[0]!.tried = false
    }
    this.wake?.()
  }

  private pause(ms: number): Promise<void> {
    return new Promise<void>((resolve) => {
      const t = this.c.clock.setTimeout(() => {
        this.wake = null
        resolve()
      }, ms)
      this.wake = () => {
        t.cancel()
        this.wake = null
        resolve()
      }
    })
  }

  private async recoverLoop(): Promise<void> {
    if (this.recovering) return
    this.recovering = true
    try {
      while (!this.closing && !this.deactive && this.state !== 'FULL') {
        if (this.attemptsThisCycle >= this.conns.length) {
          this.attemptsThisCycle = 0
          this.cycles += 1
          this.setState('DISCONN')
          await this.pause(this.c.tunables.reconnectIntervalMs)
          continue
        }
        const conn = this.pickConnection()
        this.attemptsThisCycle += 1
        this.connecting = this.tryConnect(conn)
        const reply = await this.connecting
        this.connecting = null
        if (!reply || this.deactive) continue
        try {
          await this.connected(conn, reply)
        } catch (e) {
          if (e instanceof ReplayRejected) continue
          this.log.info({ nid: conn.nid, err: (e as Error).message }, `${this.target}: recovery interrupted, reconnecting`)
          this.c.transport.reset(conn.nid, this.name)
          this.setState('DISCONN')
        }
      }
    } finally {
      this.recovering = false
    }
  }

  private async tryConnect(conn: Connection): Promise<ConnectReply | null> {
    this.connCnt += 1
    this.connectionAttempts += 1
    conn.lastTry = this.c.clock.now()
    conn.tried = true
    this.lastActivity = conn.lastTry
    this.setState('CONNECTING')
    // A connect names the previous export in its arguments, not as the connection's handle.
    const h = { ...this.header(this.c.nextXid(), 'connect'), handle: undefined }
    const args = this.remoteHandle ? { prev_handle: this.remoteHandle } : {}
    try {
      const raw = await this.sendWithin(conn.nid, h, { a: args }, this.c.tunables.connectTimeoutMs(this.cycles))
      this.lastConnectStatus = raw.header.status
      this.lastConnectError = raw.header.status === 0 ? null : (raw.header.error ?? String(raw.header.status))
      if (raw.header.status !== 0) {
        this.log.info({ nid: conn.nid, status: raw.header.status }, `${this.target}: connect to ${conn.nid} refused: ${raw.header.error ?? raw.header.status}`)
        return null
      }
      const r = raw.body as ConnectReply
      // close() began while the connect was on the wire: the target made an export all the same; it would stay in last_rcvd.
      if (this.closing) {
        await this.sendDisconnect(conn.nid, r.handle)
        return null
      }
      return r
    } catch (e) {
      this.lastConnectError = (e as Error).message
      this.log.debug({ nid: conn.nid, err: (e as Error).message }, `${this.target}: connect to ${conn.nid} failed`)
      // A refusal by the node itself (e.g. 401: not signed with the filesystem's key) says why, as a status would.
      if (e instanceof TransportError && e.kind === 'refused' && e.status) this.lastConnectStatus = e.status
      if (unanswered(e)) this.c.transport.reset(conn.nid, this.name)
      return null
    }
  }

  private async connected(conn: Connection, r: ConnectReply): Promise<void> {
    this.current = conn
    for (const c of this.conns) c.tried = false
    // Not listed when the MGS dropped its NID while the connect was out: in use all the same, it leaves the order alone.
    const at = this.conns.indexOf(conn)
    if (at > 0) this.conns.unshift(...this.conns.splice(at, 1))
    this.cycles = 0
    this.attemptsThisCycle = 0
    const reconnect = this.remoteHandle !== null
    const wasEvicted = reconnect && r.handle !== this.remoteHandle && !r.recovering
    // Back to the very instance we were replaying to (a blip): it holds what it acknowledged, so
    // go on after that (Lustre's imp_resend_replay); a restarted target gets everything again.
    const replayedUpTo = reconnect && r.recovering && r.instance === this.instance && r.handle === this.remoteHandle ? this.lastReplayTransno : 0
    this.remoteHandle = r.handle
    this.replayable = r.replayable
    this.instance = r.instance
    if (r.last_committed < this.peerCommitted)
      this.log.error(
        { nid: conn.nid, transno: r.last_committed, peer_committed: this.peerCommitted },
        `${this.target}: went back in time (transno ${this.peerCommitted} was previously committed, server now claims ${r.last_committed})! See https://bugzilla.lustre.org/show_bug.cgi?id=9646`,
      )
    this.committed(r.last_committed)
    if (wasEvicted) {
      this.setState('EVICTED')
      this.log.error({ nid: conn.nid }, `${this.target}: This client was evicted by ${this.target}; in progress operations using this service will fail.`)
      this.invalidate('evicted')
    } else if (r.recovering && this.replayable) {
      await this.replay(conn, replayedUpTo)
    }
    // A first connect has nothing to recover: CONNECTING -> FULL.
    if (reconnect) this.setState('RECOVER')
    this.invalid = this.deactive
    this.log.info({ nid: conn.nid }, `${this.target}: Connection restored to ${this.target} (at ${conn.nid})`)
    this.setState('FULL')
    // Resend what got no reply, in xid order, then release what waited.
    const resends = [...this.active].filter((q) => q.phase === 'resend').sort((a, b) => a.xid - b.xid)
    for (const q of resends) this.dispatch(q)
    const waiting = this.delayed
    this.delayed = []
    for (const q of waiting) this.submit(q)
  }

  /** Replay every kept request above `from` in transno order, one at a time; then tell the target we are done. */
  private async replay(conn: Connection, from: number): Promise<void> {
    this.setState('REPLAY')
    this.lastReplayTransno = from
    const list = [...this.replayList]
    this.log.info({ nid: conn.nid, count: list.length, bytes: this.keptBytes }, `${this.target}: replaying ${list.length} requests`)
    // An invalidation meanwhile (deactivate) reported the rest lost: none of it may execute now.
    const gen = this.generation
    const stillOurs = () => {
      if (this.generation !== gen) throw new ConnectionLost('the import was invalidated during replay')
    }
    for (const req of list) {
      stillOurs()
      if (req.transno <= this.peerCommitted || req.transno <= from) continue
      const raw = await this.sendRecovery(conn, req, ['replay'], req.transno, { a: req.args, r: req.reply })
      if (raw.header.status !== 0) {
        this.log.error({ xid: req.xid, transno: req.transno, status: raw.header.status }, `${this.target}: replay of transno ${req.transno} rejected: ${raw.header.error ?? ''}; the target evicts us`)
        this.setState('EVICTED')
        this.invalidate('replay rejected')
        throw new ReplayRejected()
      }
      this.lastReplayTransno = req.transno
      this.stats.replayed(req.bytes)
      this.committed(raw.header.lastCommitted)
    }
    stillOurs()
    this.setState('REPLAY_LOCKS')
    this.setState('REPLAY_WAIT')
    const ping = new PtlRequest(this.c.nextXid(), 'ping', {}, undefined, this.generation, false, false)
    const raw = await this.sendRecovery(conn, ping, ['replay_done'], undefined, { a: {} })
    if (raw.header.status !== 0) {
      this.setState('EVICTED')
      this.invalidate('evicted during recovery')
      throw new ReplayRejected()
    }
    this.committed(raw.header.lastCommitted)
  }

  /**
   * Recovery traffic: passes the gate, waits as long as the peer is alive. Past each deadline
   * a ping asks; the request itself is never sent twice on one connection (the target may be
   * holding it for recovery, and a second copy of a replay could execute twice).
   */
  private async sendRecovery(conn: Connection, req: PtlRequest, flags: ReqFlag[], transno: number | undefined, body: { a: unknown; r?: unknown }): Promise<RawReply> {
    const ac = new AbortController()
    this.recoveryRpc = ac
    const arm = () => {
      req.deadline = this.c.clock.setTimeout(() => {
        this.livenessPing(conn).then(
          () => {
            if (!ac.signal.aborted) arm()
          },
          (pe) => ac.abort(new ConnectionLost(`${req.op} past its deadline and the ping failed: ${(pe as Error).message}`)),
        )
      }, this.c.tunables.requestTimeoutMs)
    }
    arm()
    try {
      // A replay's bulk goes the way bulk goes: the control lane stays free for the pings that judge the peer.
      const raw = await this.c.transport.send(conn.nid, this.header(req.xid, req.op, flags, transno), body, req.bulk, ac.signal, this.route(req.bulk ? 'io' : 'ctl'))
      if (raw.header.status === -ENOTCONN || raw.header.status === -ENODEV) throw new ConnectionLost(`${req.op} answered ${raw.header.status}`)
      return raw
    } catch (e) {
      // Refused by the node itself (e.g. HTTP 400): a rejection like a bad status, so that
      // the caller takes the EVICTED path instead of reconnecting to replay it again (decided question 10).
      if (refusal(e)) return { header: { status: e.status || -EPROTO, transno: 0, lastCommitted: 0, flags: [], error: e.message }, body: {}, bulk: [] }
      throw e instanceof ConnectionLost ? e : new ConnectionLost((e as Error).message)
    } finally {
      // Done: no more deadlines, and a ping still out re-arms nothing.
      ac.abort()
      req.stopTimers()
      if (this.recoveryRpc === ac) this.recoveryRpc = null
    }
  }

  /**
   * Invalidate: fail every in-flight and queued request with EIO, drop the replay list and
   * tell the layers above to drop what they cached for this target.
   */
  private invalidate(reason: string): void {
    this.generation += 1
    this.invalid = true
    this.recoveryRpc?.abort(new ConnectionLost(`import invalidated: ${reason}`))
    this.failAll(reason)
    const dropped = this.keptBytes
    this.replayList.splice(0)
    this.keptBytes = 0
    if (dropped) this.emit('committed', dropped)
    this.emit('invalidate', reason)
  }

  /** (A method, so that the compiler does not narrow the state across awaits.) */
  isClosed(): boolean {
    return this.state === 'CLOSED'
  }

  // ---- deactivate / activate (SEMANTICS section 7) ----

  deactivate(): void {
    if (this.deactive) return
    this.deactive = true
    this.log.warn({}, `${this.target}: deactivated; I/O to it fails with EIO`)
    this.invalidate('deactivated')
    this.wake?.()
  }

  activate(): void {
    if (!this.deactive) return
    this.deactive = false
    this.log.info({}, `${this.target}: activated, reconnecting`)
    if (this.state === 'FULL') this.setState('DISCONN')
    void this.recoverLoop()
  }

  // ---- pinger ----

  /**
   * An idle import pings obd_timeout/4 after its last traffic (Lustre's imp_next_ping); one
   * with requests kept for replay pings every 7 s regardless, to learn a newer last_committed.
   */
  private schedulePing(): void {
    this.pinger?.cancel()
    const t = this.c.tunables
    const expecting = () => this.replayList.length > 0 || this.commitWaits > 0
    const wait = expecting() ? t.pingIntervalUncommittedMs : this.lastActivity + t.pingIntervalMs - this.c.clock.now()
    this.pinger = this.c.clock.setTimeout(() => {
      this.pinger = null
      // A deactivated import (FULL but invalid) sends nothing, pings included.
      if (this.state !== 'FULL' || this.invalid) return
      if (!expecting() && this.c.clock.now() - this.lastActivity < t.pingIntervalMs) return this.schedulePing()
      this.request('ping', {}, { noDelay: true }).then(
        () => undefined,
        () => undefined,
      ).finally(() => {
        if (this.state === 'FULL') this.schedulePing()
      })
    }, wait)
  }

  /** Disconnect from the target (clean umount) and fail whatever is left. */
  close(): Promise<void> {
    return (this.closing ??= this.shutdown())
  }

  private async shutdown(): Promise<void> {
    // FULL: no connect is on the wire, and none starts now (failConnection and recoverLoop see `closing`).
    if (this.state === 'FULL' && this.current && this.remoteHandle) await this.sendDisconnect(this.current.nid, this.remoteHandle)
    else await this.connecting
    this.setState('CLOSED')
    this.wake?.()
    this.failAll('import closed')
  }

  /** The target drops the export and its client's slot in last_rcvd: a restart will not wait for us. */
  private async sendDisconnect(nid: string, handle: string): Promise<void> {
    const h = { ...this.header(this.c.nextXid(), 'disconnect'), handle }
    await this.sendWithin(nid, h, { a: {} }, this.c.tunables.pingTimeoutMs).catch(() => undefined)
  }

  /** Every request in flight or waiting ends with EIO. */
  private failAll(reason: string): void {
    const victims = [...this.active, ...this.delayed]
    this.active.clear()
    this.delayed = []
    for (const r of victims) {
      r.stopTimers()
      r.abort?.abort()
      r.phase = 'done'
      r.reject(new LpError('EIO', `${this.target}: ${reason}`))
    }
  }
}
