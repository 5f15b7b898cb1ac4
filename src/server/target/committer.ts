import type { Clock, Timer } from '../../common/clock.js'
import type { Logger } from '../../common/log.js'
import type { Backend, Redo } from './backend.js'
import { Journal, MAX_RECORD_PAYLOAD } from './journal.js'
import type { Fence } from './mmp.js'
import type { Checkpoints } from './ondisk.js'
import { LpError } from '../../protocol/errno.js'
import { bulkLength } from '../../protocol/wire.js'
import type { ClientMeta, LastRcvd, LastRcvdImage } from './lastrcvd.js'

/**
 * Executed-but-uncommitted transactions live here, in memory, until the next commit writes
 * them to the journal in one fsynced record (every commit_interval, on sync, or when too many
 * bytes wait). A SIGKILL therefore loses exactly the uncommitted tail. Every so often a
 * checkpoint records the whole state so the journal can start afresh.
 */
export interface Txn {
  transno: number
  /** '' for the target's own transactions (e.g. dropping an evicted client's opens). */
  client: string
  xid: number
  reply: unknown
  redo: Redo[]
}

type Entry = { txn: Txn } | { meta: ClientMeta }

/** Room in a record's JSON header for what surrounds the entries: `{"last":N,"ents":[...]}`. */
const HEAD_ROOM = 64

export interface CommitterOptions {
  clock: Clock
  log: Logger
  intervalMs: number
  /** Commit early when this many bulk bytes wait (jbd2 commits when its journal fills too). */
  maxPendingBytes: number
  /** Cut a checkpoint once the journal holds this many bytes. */
  checkpointBytes: number
  /** The checkpoint generations on disk (the one loaded at start, then each one cut). */
  checkpoints: Checkpoints
  /** Asked before every write (MMP): once fenced, nothing more reaches the target. */
  fence?: Fence
  /** The most payload one journal record may hold (default: the on-disk format's limit). */
  maxRecordBytes?: number
}

export class Committer {
  private pending: Entry[] = []
  private pendingBytes = 0
  private running: Promise<void> | null = null
  private timer: Timer | null = null
  private waiters: Array<{ transno: number; resolve: () => void; reject: (e: unknown) => void }> = []
  private frozen = false
  private checkpointsOff = false
  /** The backend's application of committed batches (and checkpoints), in batch order. */
  private applying: Promise<void> = Promise.resolve()
  private applyBacklog = 0
  private closed = false
  /** Highest transno durable on the target's storage. */
  lastCommitted: number
  /** Highest transno executed. */
  lastTransno: number

  constructor(
    private readonly o: CommitterOptions,
    private journal: Journal,
    private readonly backend: Backend,
    private readonly lastrcvd: LastRcvd,
    lastCommitted: number,
  ) {
    this.lastCommitted = lastCommitted
    this.lastTransno = lastCommitted
  }

  get barrier(): boolean {
    return this.frozen
  }

  get uncommitted(): number {
    return this.pending.length
  }

  start(): void {
    this.arm()
  }

  private arm(): void {
    if (this.closed || this.frozen) return
    this.timer?.cancel()
    this.timer = this.o.clock.setTimeout(() => {
      this.kick().finally(() => this.arm())
    }, this.o.intervalMs)
  }

  /** A transaction the backend just executed; its transno must be the next in order. */
  add(txn: Txn): void {
    this.lastTransno = Math.max(this.lastTransno, txn.transno)
    this.pending.push({ txn })
    for (const r of txn.redo) this.pendingBytes += bulkLength(r.data)
    if (this.pendingBytes >= this.o.maxPendingBytes) void this.kick()
  }

  /** Commit in the background; a failure is logged by commitOnce and fails the sync waiters. */
  private kick(): Promise<void> {
    return this.commit().catch(() => undefined)
  }

  addMeta(meta: ClientMeta): void {
    this.pending.push({ meta })
  }

  nextTransno(): number {
    return this.lastTransno + 1
  }

  /** Resolve once `transno` is committed (under a barrier: at once, committing nothing). */
  async syncUpTo(transno: number): Promise<void> {
    if (this.frozen || transno <= this.lastCommitted) return
    const p = new Promise<void>((resolve, reject) => this.waiters.push({ transno, resolve, reject }))
    void this.kick()
    return p
  }

  /** Commit everything pending now. Concurrent callers share one commit at a time. */
  commit(): Promise<void> {
    if (this.running) return this.running.then(() => (this.pending.length ? this.commit() : undefined))
    if (this.frozen || this.closed || this.pending.length === 0) return Promise.resolve()
    this.running = this.commitOnce().finally(() => {
      this.running = null
    })
    return this.running
  }

  /** Everything pending now goes to the journal, in as many records as the on-disk format needs. */
  private async commitOnce(): Promise<void> {
    for (let left = this.pending.length; left > 0; ) left -= await this.commitRecord(left)
  }

  /**
   * One journal record of the longest prefix of `pending` (at most `max` entries) that fits
   * the format's limit. Entries leave `pending` only once their record is durable: a record
   * that fails takes nothing with it, and last_committed never passes it.
   */
  private async commitRecord(max: number): Promise<number> {
    const limit = this.o.maxRecordBytes ?? MAX_RECORD_PAYLOAD
    let last = this.lastCommitted
    let size = 4 + HEAD_ROOM
    const ents: string[] = []
    const redo: Redo[] = []
    const data: Buffer[] = []
    for (const e of this.pending.slice(0, max)) {
      let text: string
      let d = 0
      const rd: Redo[] = []
      if ('meta' in e) text = JSON.stringify({ m: e.meta })
      else {
        const t = e.txn
        const r = t.redo.map((x) => {
          rd.push(x)
          if (!x.data) return { rec: x.rec }
          const n = bulkLength(x.data)
          d += n
          return { rec: x.rec, d: n }
        })
        text = JSON.stringify({ t: t.transno, c: t.client, x: t.xid, s: t.reply, r })
      }
      const add = Buffer.byteLength(text) + 1 + d
      // A single entry never exceeds the limit: requests are bounded far below it at the front.
      if (ents.length && size + add > limit) break
      size += add
      ents.push(text)
      for (const x of rd) {
        redo.push(x)
        if (x.data) data.push(...x.data)
      }
      if (!('meta' in e)) last = Math.max(last, e.txn.transno)
    }
    const n = ents.length
    const head = `{"last":${last},"ents":[${ents.join(',')}]}`
    // Cut the checkpoint image now, synchronously: memory holds exactly this batch's state,
    // unless the batch had to be split (memory is ahead of it then: no checkpoint this time).
    const cut =
      !this.checkpointsOff && n === this.pending.length && this.journal.bytes >= this.o.checkpointBytes
        ? { lastrcvd: this.lastrcvd.image(), backend: this.backend.snapshot() }
        : null
    const bytes = bulkLength(data)
    const t0 = this.o.clock.now()
    try {
      await this.journal.append(head, data)
    } catch (e) {
      if (this.o.fence?.fenced) this.o.log.debug({ err: e }, 'not committed: another node holds the target')
      else this.o.log.error({ err: e }, 'journal commit failed')
      for (const w of this.waiters.splice(0)) w.reject(e)
      throw e
    }
    this.pending.splice(0, n)
    this.pendingBytes -= bytes
    this.lastCommitted = last
    this.o.log.debug({ transno: last, entries: n, bytes, ms: Math.round(this.o.clock.now() - t0) }, 'committed')
    // Durable now: syncs need not wait for the backend's files or the checkpoint (nor fail with them).
    this.wake()
    // A checkpoint covers exactly this batch: later batches go to a new journal file from now on.
    const journalSeq = cut
      ? await this.journal.rotate().catch((e: unknown) => {
          // The batch is durable all the same: it is applied below, and the journal keeps it (and all that follows).
          this.checkpointsOff = true
          if (!this.o.fence?.fenced) this.o.log.error({ err: e }, 'starting a new journal file failed: no more checkpoints, the journal keeps everything')
          return 0
        })
      : 0
    // The backend applies batches (and cuts checkpoints) behind the journal, in order, while
    // the next batches commit: the journal's rate, not the files', paces last_committed.
    this.applyBacklog += bytes
    this.applying = this.applying.then(async () => {
      try {
        await this.o.fence?.check()
        await this.backend.afterCommit(redo)
      } catch (e) {
        // The journal still holds the batch a restart will redo; it must never be cut away now.
        this.checkpointsOff = true
        if (!this.o.fence?.fenced) this.o.log.error({ err: e }, 'applying a committed batch failed: no more checkpoints, the journal keeps everything')
        return
      } finally {
        this.applyBacklog -= bytes
      }
      if (cut && !this.checkpointsOff)
        await this.checkpoint(cut, last, journalSeq).catch((e) => {
          // A failed fsync is reported once: Linux marks the pages clean, so the next checkpoint's
          // fsync would succeed without them on disk and cut away the journal that holds them.
          this.checkpointsOff = true
          if (!this.o.fence?.fenced) this.o.log.error({ err: e }, 'checkpoint failed: no more checkpoints, the journal keeps everything')
        })
    })
    // Memory holds what is committed but not applied yet: bounded, commits wait past it.
    if (this.applyBacklog > this.o.maxPendingBytes * 4) await this.applying
    return n
  }

  private wake(): void {
    const still: typeof this.waiters = []
    for (const w of this.waiters) (w.transno <= this.lastCommitted ? w.resolve() : still.push(w))
    this.waiters = still
  }

  /**
   * Record the state at `transno`; journal files from `journalSeq` on hold everything after
   * it. The previous generation stays, with its journal files, in case this one is damaged.
   */
  private async checkpoint(cut: { lastrcvd: LastRcvdImage; backend: unknown }, transno: number, journalSeq: number): Promise<void> {
    await this.o.fence?.check()
    const ref = await this.backend.persist(cut.backend, transno)
    const keepFrom = await this.o.checkpoints.write({ transno, journal_seq: journalSeq, lastrcvd: cut.lastrcvd, backend: ref })
    await this.journal.dropBefore(keepFrom)
    await this.o.fence?.check()
    await this.backend.afterCheckpoint(this.o.checkpoints.liveBackendRefs())
    this.o.log.info({ transno }, 'checkpoint')
  }

  /** Replay barrier: commit everything, then commit nothing more until the target stops. */
  async freeze(): Promise<number> {
    await this.commit()
    this.frozen = true
    this.timer?.cancel()
    this.wake()
    for (const w of this.waiters.splice(0)) w.resolve()
    return this.lastCommitted
  }

  /**
   * Stop; a clean stop commits what is pending first (unless frozen by a barrier). Its commit
   * failed, the stop goes on all the same (the error is thrown after): no timer nor journal
   * is left to commit for a target that is gone.
   */
  async close(clean: boolean): Promise<void> {
    try {
      if (clean) await this.commit()
      else await this.running?.catch(() => undefined)
    } finally {
      this.closed = true
      this.timer?.cancel()
      await this.running?.catch(() => undefined)
      await this.applying
      for (const w of this.waiters.splice(0)) w.reject(new LpError('ENODEV', 'target stopped before the commit'))
      await this.journal.close()
    }
  }
}
