import path from 'node:path'
import { randomBytes } from 'node:crypto'
import type { Clock, Timer } from '../../common/clock.js'
import type { Logger } from '../../common/log.js'
import { totalLength } from '../../common/chunks.js'
import { mkdirDurable, readJson, writeFileAtomic } from '../../common/fsutil.js'
import { LpError, toStatus } from '../../protocol/errno.js'
import type { TargetKind } from '../../protocol/names.js'
import { OPS, type OpName, type ConnectReply } from '../../protocol/ops.js'
import type { ReplyFlag, ReqHeader } from '../../protocol/wire.js'
import type { KeyClass } from '../../common/keyfile.js'
import type { Guard } from '../guard.js'
import type { Backend, Redo } from './backend.js'
import { Committer } from './committer.js'
import { Journal } from './journal.js'
import { LastRcvd } from './lastrcvd.js'
import type { Fence } from './mmp.js'
import { Checkpoints, journalForStart } from './ondisk.js'
import { Recovery, type RecoveryStatusView } from './recovery.js'
import { TargetStats } from './stats.js'

/** The UUID of an MDT's OSP (<MDT>-mdtlov-<hex>_UUID), new at each MDT start. */
const OSP_UUID = /^(.+-mdtlov-)[0-9a-f]+_UUID$/

export interface TargetTunables {
  obdTimeoutMs: number
  commitIntervalMs: number
  recoverySoftMs: number
  recoveryHardMs: number
  maxPendingBytes: number
  checkpointBytes: number
  imperativeRecovery: boolean
}

export interface TargetOptions {
  name: string
  kind: TargetKind
  /** Where this target keeps its state (journal, checkpoint, backend files). */
  dir: string
  clock: Clock
  log: Logger
  backend: Backend
  /** failover mode: clients keep requests for replay, and the target runs recovery. */
  replayable: boolean
  tunables: TargetTunables
  /** MMP: asked before every write to the target's directory. */
  fence?: Fence
  /** Start past journal damage from the last good record (the admin's --discard-corrupt-journal). */
  discardCorruptJournal?: boolean
  /** Saved replies an export may hold (default MAX_SAVED_REPLIES). */
  maxSavedReplies?: number
  /** The filesystem's shared key: every request is checked with it (none: a filesystem formatted without a key). */
  guard?: Guard | null
}

/**
 * Replies a client has not acknowledged (its last_xid stays below them) are kept for its
 * resends; a client that never acknowledges would grow them without end. Far above what the
 * import's requests in flight leave.
 */
export const MAX_SAVED_REPLIES = 16384
/**
 * How far past last_committed a replay's transno may be. What a crash leaves uncommitted is
 * what the target executed since its last commit (every commit_interval, sooner past
 * max_pending_bytes): never billions of transactions. A replay claiming more would push every
 * later transno up with it, towards 2^53 where a transno + 1 is no longer a new number.
 */
export const MAX_TRANSNO_JUMP = 2 ** 32

export interface TargetReply {
  http: number
  status: number
  transno: number
  lastCommitted: number
  flags: ReplyFlag[]
  body: unknown
  bulk?: Buffer
  error?: string
}

interface Export {
  uuid: string
  handle: string
  connCnt: number
  lastSeen: number
}

const INSTANCE_FILE = 'instance'

/**
 * One target (MGS, MDT or OST) as its node serves it: exports and connects, transno order,
 * commit and last_rcvd, reply reconstruction for resends, recovery gating, eviction.
 */
export class Target {
  readonly name: string
  readonly kind: TargetKind
  readonly replayable: boolean
  instance = 0
  readonly stats: TargetStats
  private readonly exports = new Map<string, Export>()
  private recovery!: Recovery
  private committer!: Committer
  private lastrcvd!: LastRcvd
  private stopping = false
  private evictorTimer: Timer | null = null
  private deferred: Array<() => void> = []
  /** The replies of the replays executed in this recovery, by transno. */
  private readonly replayed = new Map<number, { client: string; body: unknown }>()
  /** Modifying requests not answered yet, by client UUID and xid (`<uuid> <xid>`). */
  private readonly inProgress = new Map<string, Promise<TargetReply>>()
  private readonly log: Logger

  private constructor(private readonly o: TargetOptions) {
    this.name = o.name
    this.kind = o.kind
    this.replayable = o.replayable
    this.stats = new TargetStats(o.kind)
    this.log = o.log.child({ target: o.name })
  }

  /** Load the committed state (checkpoint + journal prefix) and arm recovery. */
  static async open(o: TargetOptions): Promise<Target> {
    const t = new Target(o)
    await t.load()
    return t
  }

  private async load(): Promise<void> {
    const { dir, backend, fence } = this.o
    await mkdirDurable(dir)
    const checkpoints = await Checkpoints.load({ dir, name: this.name, backend, log: this.log, fence })
    const cp = checkpoints.cp
    this.lastrcvd = LastRcvd.load(cp.lastrcvd)
    const jdir = path.join(dir, 'journal')
    const scan = await journalForStart({
      dir: jdir,
      name: this.name,
      fromSeq: cp.journal_seq,
      base: cp.transno,
      discardCorrupt: this.o.discardCorruptJournal ?? false,
      log: this.log,
      clock: this.o.clock,
      fence,
    })
    let last = cp.transno
    for (const { json, data } of scan.records) {
      let off = 0
      for (const e of json.ents) {
        if ('m' in e) {
          this.lastrcvd.applyMeta(e.m)
          continue
        }
        for (const r of e.r) {
          const d = r.d ? data.subarray(off, off + r.d) : Buffer.alloc(0)
          off += r.d ?? 0
          await backend.redo(r.rec, d).catch((err: unknown) => this.quarantine(e.t, r.rec, d, err))
        }
        if (e.c) this.lastrcvd.record(e.c, e.x, e.t, e.s)
      }
      last = Math.max(last, json.last)
    }
    const journal = await Journal.openForAppend(jdir, scan.lastSeq, scan.validBytes, fence)
    this.committer = new Committer(
      {
        clock: this.o.clock,
        log: this.log,
        intervalMs: this.o.tunables.commitIntervalMs,
        maxPendingBytes: this.o.tunables.maxPendingBytes,
        checkpointBytes: this.o.tunables.checkpointBytes,
        checkpoints,
        fence,
      },
      journal,
      backend,
      this.lastrcvd,
      last,
    )
    this.instance = ((await readJson<number>(path.join(dir, INSTANCE_FILE))) ?? 0) + 1
    await writeFileAtomic(path.join(dir, INSTANCE_FILE), String(this.instance), fence && (() => fence.check()))
    this.log.info({ transno: last, instance: this.instance, clients: this.lastrcvd.clients.size }, `${this.name}: loaded, last_committed ${last}`)

    const known = this.replayable ? [...this.lastrcvd.clients.keys()] : []
    this.recovery = new Recovery({
      clock: this.o.clock,
      log: this.log,
      target: this.name,
      known,
      lastCommitted: last,
      softMs: this.o.tunables.recoverySoftMs,
      hardMs: this.o.tunables.recoveryHardMs,
      imperative: this.o.tunables.imperativeRecovery,
      evict: (uuid, why) => this.evict(uuid, why),
    })
    void this.recovery.whenComplete().then(() => {
      this.replayed.clear()
      this.runDeferred()
      this.o.backend.recovered?.()
    })
    // A non-replayable target forgets its clients at restart: they come back as new (evicted).
    if (!this.replayable) for (const uuid of [...this.lastrcvd.clients.keys()]) this.evict(uuid, 'target restarted without recovery')
  }

  /**
   * A committed record the backend cannot redo (its filesystem refuses it, or it is damaged):
   * kept aside in quarantine/ with the reason, and the target starts without it, rather than
   * refusing every start. The client's change is lost, and the log says which.
   */
  private async quarantine(transno: number, rec: Record<string, unknown>, data: Buffer, e: unknown): Promise<void> {
    const dir = path.join(this.o.dir, 'quarantine')
    const fence = this.o.fence
    await fence?.check()
    await mkdirDurable(dir, 0o700)
    const file = path.join(dir, `transno-${transno}-${randomBytes(4).toString('hex')}.json`)
    const err = e instanceof Error ? e.message : String(e)
    await writeFileAtomic(file, JSON.stringify({ transno, error: err, rec, data: data.length ? data.toString('base64') : undefined }), fence && (() => fence.check()))
    this.log.error({ transno, err, file }, `${this.name}: journal redo of a record of transno ${transno} failed (${err}); quarantined in ${file}, starting without it`)
  }

  /** Start committing and evicting silent clients; called once the node serves the target. */
  start(): void {
    this.committer.start()
    this.o.backend.start?.(this.log, (redo) => this.ownTxn(redo))
    this.scheduleEvictor()
  }

  get lastCommitted(): number {
    return this.committer.lastCommitted
  }

  get lastTransno(): number {
    return this.committer.lastTransno
  }

  get recovering(): boolean {
    return this.recovery.active
  }

  private reply(status: number, body: unknown = {}, extra: Partial<TargetReply> = {}): TargetReply {
    return {
      http: 200,
      status,
      transno: 0,
      lastCommitted: this.committer.lastCommitted,
      flags: this.recovery.active ? ['recovering'] : [],
      body,
      ...extra,
    }
  }

  private fail(e: unknown): TargetReply {
    const status = toStatus(e)
    return this.reply(status, {}, { error: e instanceof Error ? e.message : String(e) })
  }

  get guard(): Guard | null {
    return this.o.guard ?? null
  }

  /**
   * `peer`: the NID the request came from, as the transport saw it. `signer`: the class of
   * the shared key that signed it (null: a filesystem without a key).
   */
  async handle(h: ReqHeader, args: unknown, replayReply: unknown, bulk: Buffer[], peer?: string, signer: KeyClass | null = null): Promise<TargetReply> {
    const start = this.o.clock.now()
    const r = await this.serve(h, args, replayReply, bulk, peer, signer)
    if (h.op in OPS) this.stats.record(h.op as OpName, this.o.clock.now() - start, r.status ? 0 : h.op === 'ost_read' ? (r.bulk?.length ?? 0) : totalLength(bulk))
    return r
  }

  private async serve(h: ReqHeader, args: unknown, replayReply: unknown, bulk: Buffer[], peer: string | undefined, signer: KeyClass | null): Promise<TargetReply> {
    if (this.stopping) return this.fail(new LpError('ENODEV', `${this.name} is stopping`))
    const op = h.op as OpName
    if (op === 'connect') return this.connect(h, args as { prev_handle?: string }, signer)
    const exp = this.exports.get(h.client)
    if (!exp || exp.handle !== h.handle) return this.fail(new LpError('ENOTCONN', `${this.name}: client ${h.client} is not connected`))
    if (h.connCnt < exp.connCnt) return this.reply(-107, {}, { flags: ['stale_conn'], error: 'request from an older connection' })
    exp.lastSeen = this.o.clock.now()
    this.lastrcvd.prune(h.client, h.lastXid)

    if (op === 'disconnect') {
      this.evict(h.client, 'disconnected', true)
      // Durably forgotten before the reply: after a crash, recovery must not wait for a client that left.
      return this.committer.commit().then(
        () => this.reply(0),
        (e) => this.fail(e),
      )
    }
    if (op === 'ping') {
      if (h.flags.includes('replay_done') && this.recovery.active) {
        await this.recovery.replayDone(h.client)
        if (!this.exports.has(h.client)) return this.fail(new LpError('ENOTCONN', 'evicted during recovery'))
      }
      return this.reply(0)
    }
    if (h.flags.includes('replay')) return this.replay(h, op, args, replayReply, bulk, peer)
    if (!OPS[op].modifying) return this.request(h, op, args, bulk, peer)
    // One execution per xid: a resend that arrives while its original still waits (for the end
    // of recovery, or in the backend's prepare) waits for it, then finds its saved reply.
    const key = `${h.client} ${h.xid}`
    for (let first = this.inProgress.get(key); first; first = this.inProgress.get(key)) await first
    const p = this.request(h, op, args, bulk, peer).finally(() => this.inProgress.delete(key))
    this.inProgress.set(key, p)
    return p
  }

  /** A request other than a connect, ping, disconnect or replay. */
  private async request(h: ReqHeader, op: OpName, args: unknown, bulk: Buffer[], peer: string | undefined): Promise<TargetReply> {
    if (this.recovery.active) {
      await this.recovery.whenComplete()
      if (this.stopping) return this.fail(new LpError('ENODEV', `${this.name} is stopping`))
      if (this.exports.get(h.client)?.handle !== h.handle) return this.fail(new LpError('ENOTCONN', 'evicted during recovery'))
    }
    const spec = OPS[op]
    if (spec.modifying && h.flags.includes('resend')) {
      const saved = this.lastrcvd.find(h.client, h.xid)
      if (saved) {
        this.log.info({ client: h.client, xid: h.xid, transno: saved.transno, status: saved.status }, 'resend: reconstructing the saved reply')
        return this.reply(saved.status ?? 0, saved.body, { transno: saved.transno, error: saved.error })
      }
    }
    const maxSaved = this.o.maxSavedReplies ?? MAX_SAVED_REPLIES
    if (spec.modifying && this.lastrcvd.savedCount(h.client) >= maxSaved) {
      const msg = `${this.name}: client ${h.client} holds ${maxSaved} saved replies (last_xid ${h.lastXid} acknowledges none of them): refusing its changes until it does`
      this.log.warn({ client: h.client, xid: h.xid }, msg)
      return this.fail(new LpError('EDQUOT', msg))
    }
    try {
      if (spec.modifying) {
        for (let wait = this.o.backend.prepare?.(op, args); wait; wait = this.o.backend.prepare?.(op, args)) {
          // What the backend waits for is its own transaction: commit it now, not at the next interval.
          void this.committer.commit().catch(() => undefined)
          await wait
        }
        if (this.stopping) return this.fail(new LpError('ENODEV', `${this.name} is stopping`))
        // Evicted while it waited: its saved replies are gone, and a resend would run it again.
        if (this.exports.get(h.client)?.handle !== h.handle) return this.fail(new LpError('ENOTCONN', `${this.name}: client ${h.client} was evicted while its request waited`))
        return this.executeOnce(h, op, args, bulk, peer)
      }
      if (op === 'sync') {
        await this.committer.syncUpTo(this.committer.lastTransno)
        return this.reply(0)
      }
      const r = await this.o.backend.query(op, args, { client: h.client, transno: 0, bulk, now: this.o.clock.wallNow(), peer })
      return this.reply(0, r.body, { bulk: r.bulk })
    } catch (e) {
      return this.fail(e)
    }
  }

  /**
   * A new modifying request. Its failure is saved in last_rcvd like a success (committed with
   * the next batch, pruned by last_xid the same way): a resend gets that answer back instead
   * of executing again on a state that may have changed since.
   */
  private executeOnce(h: ReqHeader, op: OpName, args: unknown, bulk: Buffer[], peer: string | undefined): TargetReply {
    try {
      return this.execute(h, op, args, undefined, bulk, this.committer.nextTransno(), peer)
    } catch (e) {
      const r = this.fail(e)
      const meta = { k: 'client_fail' as const, uuid: h.client, xid: h.xid, status: r.status, error: r.error }
      this.lastrcvd.applyMeta(meta)
      this.committer.addMeta(meta)
      return r
    }
  }

  /** Execute a modifying request under `transno`; throws (nothing changed) on failure. */
  private execute(h: ReqHeader, op: OpName, args: unknown, replayReply: unknown, bulk: Buffer[], transno: number, peer: string | undefined): TargetReply {
    const applied = this.o.backend.apply(op, args, { client: h.client, transno, bulk, replayReply, now: this.o.clock.wallNow(), peer })
    this.committer.add({ transno, client: h.client, xid: h.xid, reply: applied.body, redo: applied.redo })
    this.lastrcvd.record(h.client, h.xid, transno, applied.body)
    this.log.debug({ op, xid: h.xid, transno, client: h.client }, 'executed')
    return this.reply(0, applied.body, { transno })
  }

  private replay(h: ReqHeader, op: OpName, args: unknown, replayReply: unknown, bulk: Buffer[], peer: string | undefined): Promise<TargetReply> {
    const transno = h.transno
    if (!transno || !OPS[op].modifying) return Promise.resolve(this.fail(new LpError('EPROTO', 'a replay needs a modifying op and its transno')))
    if (transno <= this.committer.lastCommitted) {
      // Committed before the crash: nothing to redo; hand back what it replied then.
      const saved = this.lastrcvd.find(h.client, h.xid)
      return Promise.resolve(this.reply(0, saved?.body ?? replayReply ?? {}, { transno }))
    }
    if (!this.recovery.active) return Promise.resolve(this.fail(new LpError('ENOTCONN', `${this.name} is not in recovery`)))
    if (transno > this.committer.lastCommitted + MAX_TRANSNO_JUMP) {
      const msg = `${this.name}: replay of transno ${transno} from ${h.client} is beyond last_committed ${this.committer.lastCommitted} + ${MAX_TRANSNO_JUMP}: no transaction of this target had it`
      this.log.warn({ client: h.client, xid: h.xid, transno }, msg)
      return Promise.resolve(this.fail(new LpError('EPROTO', msg)))
    }
    // Sent again because its reply was lost (the client reconnected): answer as the first time.
    // Its saved reply in last_rcvd may already be pruned by the client's last_xid.
    const first = this.replayed.get(transno)
    if (first?.client === h.client) return Promise.resolve(this.reply(0, first.body, { transno }))
    return new Promise((resolve) => {
      this.recovery.replay(
        h.client,
        transno,
        () => {
          try {
            const r = this.execute(h, op, args, replayReply, bulk, transno, peer)
            this.replayed.set(transno, { client: h.client, body: r.body })
            this.recovery.outcome(true)
            resolve(r)
          } catch (e) {
            resolve(this.fail(e))
            this.replayFailed(h, op, transno, e)
          }
        },
        () => resolve(this.fail(new LpError('ENOTCONN', 'evicted before this replay ran'))),
      )
    })
  }

  /**
   * A replay that failed: its client's state cannot be rebuilt, so it goes, and only it. A
   * version mismatch (EOVERFLOW) is version-based recovery refusing a replay whose objects
   * changed since (another client's work, or a transno lost with a dead client).
   */
  private replayFailed(h: ReqHeader, op: OpName, transno: number, e: unknown): void {
    const msg = e instanceof Error ? e.message : String(e)
    const vbr = e instanceof LpError && e.code === 'EOVERFLOW'
    this.recovery.outcome(false, vbr)
    const fields = { client: h.client, xid: h.xid, transno, op, err: msg }
    if (vbr) {
      const what = msg.startsWith(`${this.name}: `) ? msg : `${this.name}: ${msg}`
      this.log.warn(fields, `${what} (replay of transno ${transno}), evicting client ${h.client}`)
      this.evict(h.client, `version mismatch in replay of transno ${transno}`)
    } else {
      this.log.error(fields, `${this.name}: replay of transno ${transno} failed, evicting ${h.client}`)
      this.evict(h.client, `replay of transno ${transno} failed`)
    }
  }

  /**
   * On a keyed filesystem (`signer` set) a UUID is no proof of identity: a client takes back
   * its export, in recovery or not, only by naming its handle; a new connect with a UUID in
   * use is refused (EALREADY, as Lustre refuses one from another NID) instead of evicting the
   * holder, unless signed with the node key (a server's own client after failover: only
   * servers hold it). Without a key, as before: the newcomer wins.
   */
  private connect(h: ReqHeader, args: { prev_handle?: string }, signer: KeyClass | null): Promise<TargetReply> | TargetReply {
    const uuid = h.client
    const now = this.o.clock.now()
    // An OSP's connect evicts the OSP before it: on a keyed filesystem, a server's act alone.
    if (signer && signer !== 'node' && OSP_UUID.test(uuid))
      return this.fail(new LpError('EPERM', `${this.name}: ${uuid} names an MDT's OSP: its connect must be signed with the filesystem's node key, not the ${signer} key`))
    this.dropOldOsp(uuid)
    const existing = this.exports.get(uuid)
    // A connect of this same import from an older connection, arriving late, must not take the export back.
    if (existing && args.prev_handle === existing.handle && h.connCnt < existing.connCnt)
      return this.fail(new LpError('EALREADY', `${this.name}: ${uuid} already connected at a greater conn_cnt: ${existing.connCnt} > ${h.connCnt}`))
    const ok = (handle: string, recovering: boolean): TargetReply => {
      const body: ConnectReply = {
        handle,
        instance: this.instance,
        replayable: this.replayable,
        recovering,
        last_committed: this.committer.lastCommitted,
        target_uuid: `${this.name}_UUID`,
      }
      return this.reply(0, body)
    }
    if (this.recovery.active) {
      const rec = this.lastrcvd.clients.get(uuid)
      if (rec && this.recovery.isKnown(uuid)) {
        if (signer && args.prev_handle !== rec.handle)
          return this.fail(new LpError('EALREADY', `${this.name}: ${uuid} reconnecting for recovery without its export handle; refused`))
        this.exports.set(uuid, { uuid, handle: rec.handle, connCnt: h.connCnt, lastSeen: now })
        this.recovery.connect(uuid)
        this.log.info({ client: uuid }, `${this.name}: client ${uuid} reconnected for recovery`)
        return ok(rec.handle, true)
      }
      const v = this.recovery.view(this.committer.lastTransno)
      const recovered = parseInt(v.completed_clients, 10) // "n/N"
      const msg = `${this.name}: Denying connection for new client ${uuid}, waiting for ${this.lastrcvd.clients.size} known clients (${recovered} recovered, ${v.req_replay_clients} in progress, and ${v.evicted_clients} evicted) to recover`
      this.log.info({ client: uuid }, msg)
      return this.fail(new LpError('EBUSY', msg))
    }
    if (existing && args.prev_handle === existing.handle) {
      existing.connCnt = h.connCnt
      existing.lastSeen = now
      return ok(existing.handle, false)
    }
    if (existing && signer && signer !== 'node')
      return this.fail(new LpError('EALREADY', `${this.name}: client ${uuid} is already connected; a reconnect names its export handle`))
    // A client we do not know on this connection starts afresh; an older incarnation goes.
    if (existing) this.evict(uuid, 'reconnected without its export handle')
    const handle = randomBytes(8).toString('hex')
    this.exports.set(uuid, { uuid, handle, connCnt: h.connCnt, lastSeen: now })
    if (!this.replayable) return ok(handle, false)
    const meta = { k: 'client_add' as const, v: { uuid, handle, lastTransno: 0, lastXid: 0 } }
    this.lastrcvd.applyMeta(meta)
    this.committer.addMeta(meta)
    this.log.info({ client: uuid }, `${this.name}: new client ${uuid} connected`)
    // A client must be known durably before it may expect recovery to wait for it.
    return this.committer.commit().then(
      () => ok(handle, false),
      (e) => this.fail(e),
    )
  }

  /**
   * An MDT's OSP connects with a new UUID at every MDT start (<MDT>-mdtlov-<hex>_UUID): the
   * incarnation before is dead and nothing of it will be replayed (the MDT sends again what
   * its llog holds), so it goes at once instead of holding up recovery or the evictor.
   */
  private dropOldOsp(uuid: string): void {
    const m = OSP_UUID.exec(uuid)
    if (!m) return
    for (const old of new Set([...this.exports.keys(), ...this.lastrcvd.clients.keys()]))
      if (old !== uuid && old.startsWith(m[1]!)) this.evict(old, `replaced by the MDT's new OSP ${uuid}`)
  }

  /** Forget a client: its export, last_rcvd slot and (through the backend) its opens. */
  evict(uuid: string, why: string, clean = false): void {
    this.exports.delete(uuid)
    if (this.lastrcvd.clients.has(uuid)) {
      const meta = { k: 'client_del' as const, uuid }
      this.lastrcvd.applyMeta(meta)
      this.committer.addMeta(meta)
    }
    if (clean) this.log.info({ client: uuid }, `${this.name}: client ${uuid} disconnected`)
    else this.log.warn({ client: uuid }, `${this.name}: evicting client ${uuid}: ${why}`)
    this.recovery?.dropped(uuid)
    this.whenIdle(() => this.internalTxn(this.o.backend.dropClient(uuid, this.o.clock.wallNow())))
  }

  /** The target's own transactions (no client) must not take transnos that replays will use. */
  private whenIdle(fn: () => void): void {
    if (this.recovery?.active) this.deferred.push(fn)
    else fn()
  }

  private runDeferred(): void {
    for (const fn of this.deferred.splice(0)) fn()
  }

  /** Commit a change the target makes by itself (e.g. an MDT's object-destroy bookkeeping). */
  internalTxn(redo: Redo[]): void {
    if (!redo.length || this.stopping) return
    // Numbered only once recovery is over: a transno taken now would be a replay's, and once
    // committed, last_committed would tell its client to drop that request unreplayed.
    this.whenIdle(() => {
      if (!this.stopping) this.committer.add({ transno: this.committer.nextTransno(), client: '', xid: 0, reply: null, redo })
    })
  }

  /**
   * Commit bookkeeping that no client's request orders (the MDT's FID range grants): it takes
   * no transno, so it leaves no gap in the replays' sequence and need not wait for recovery.
   */
  private ownTxn(redo: Redo[]): void {
    if (redo.length && !this.stopping) this.committer.add({ transno: 0, client: '', xid: 0, reply: null, redo })
  }

  private scheduleEvictor(): void {
    const period = this.o.tunables.obdTimeoutMs / 4
    this.evictorTimer = this.o.clock.setTimeout(() => {
      if (this.stopping) return
      if (!this.recovery.active) {
        const limit = this.o.clock.now() - 1.5 * this.o.tunables.obdTimeoutMs
        for (const e of [...this.exports.values()])
          if (e.lastSeen < limit) this.evict(e.uuid, `no request or ping for ${Math.round((this.o.clock.now() - e.lastSeen) / 1000)}s`)
      }
      this.scheduleEvictor()
    }, period)
  }

  /** Admin: evict one client by uuid (or its uuid prefix). */
  adminEvict(uuid: string): boolean {
    const match = [...this.exports.keys(), ...this.lastrcvd.clients.keys()].find((u) => u === uuid)
    if (!match) return false
    this.evict(match, 'evicted by the administrator')
    return true
  }

  abortRecovery(): boolean {
    if (!this.recovery.active) return false
    this.recovery.abort()
    return true
  }

  /** Replay barrier: commit everything, then keep executing but commit nothing. */
  barrier(): Promise<number> {
    this.log.warn({ transno: this.committer.lastCommitted }, `${this.name}: replay barrier set, nothing more will be committed until the target stops`)
    return this.committer.freeze()
  }

  recoveryStatus(): RecoveryStatusView {
    return this.recovery.view(this.committer.lastTransno)
  }

  clients(): Array<{ uuid: string; connected: boolean; lastSeenMsAgo?: number }> {
    const now = this.o.clock.now()
    const all = new Set([...this.lastrcvd.clients.keys(), ...this.exports.keys()])
    return [...all].map((uuid) => {
      const e = this.exports.get(uuid)
      return { uuid, connected: !!e, lastSeenMsAgo: e ? Math.round(now - e.lastSeen) : undefined }
    })
  }

  get barrierSet(): boolean {
    return this.committer.barrier
  }

  async stop(clean: boolean): Promise<void> {
    this.stopping = true
    this.evictorTimer?.cancel()
    this.recovery.close()
    try {
      await this.committer.close(clean)
    } finally {
      await this.o.backend.close()
    }
    this.log.info({ transno: this.committer.lastCommitted }, `${this.name}: stopped${clean ? '' : ' (not clean)'}`)
  }
}
