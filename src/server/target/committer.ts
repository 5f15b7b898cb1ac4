import path from 'node:path'
import type { Clock, Timer } from '../../common/clock.js'
import type { Logger } from '../../common/log.js'
import { writeFileAtomic } from '../../common/fsutil.js'
import type { Backend, Redo } from './backend.js'
import { Journal } from './journal.js'
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

/** The journal's JSON for one batch. */
export interface BatchJson {
  last: number
  ents: Array<{ t: number; c: string; x: number; s: unknown; r: Array<{ rec: Record<string, unknown>; d?: number }> } | { m: ClientMeta }>
}

export interface CheckpointFile {
  transno: number
  journal_seq: number
  lastrcvd: LastRcvdImage
  backend: unknown
}

export const CHECKPOINT = 'CHECKPOINT'

export interface CommitterOptions {
  dir: string
  clock: Clock
  log: Logger
  intervalMs: number
  /** Commit early when this many bulk bytes wait (jbd2 commits when its journal fills too). */
  maxPendingBytes: number
  /** Cut a checkpoint once the journal holds this many bytes. */
  checkpointBytes: number
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

  private async commitOnce(): Promise<void> {
    const batch = this.pending
    this.pending = []
    this.pendingBytes = 0
    let last = this.lastCommitted
    const redo: Redo[] = []
    const data: Buffer[] = []
    const json: BatchJson = { last: 0, ents: [] }
    for (const e of batch) {
      if ('meta' in e) {
        json.ents.push({ m: e.meta })
        continue
      }
      const t = e.txn
      last = Math.max(last, t.transno)
      json.ents.push({
        t: t.transno,
        c: t.client,
        x: t.xid,
        s: t.reply,
        r: t.redo.map((r) => {
          redo.push(r)
          if (!r.data) return { rec: r.rec }
          data.push(...r.data)
          return { rec: r.rec, d: bulkLength(r.data) }
        }),
      })
    }
    json.last = last
    // Cut the checkpoint image now, synchronously: memory holds exactly this batch's state.
    const cut =
      this.journal.bytes >= this.o.checkpointBytes
        ? { lastrcvd: this.lastrcvd.image(), backend: this.backend.snapshot() }
        : null
    const bytes = bulkLength(data)
    const t0 = this.o.clock.now()
    try {
      await this.journal.append(json, data)
    } catch (e) {
      this.o.log.error({ err: e }, 'journal commit failed')
      // The batch goes back ahead of what came since: a later commit must not advance
      // last_committed past transactions that are not in the journal.
      this.pending = batch.concat(this.pending)
      this.pendingBytes += bytes
      for (const w of this.waiters.splice(0)) w.reject(e)
      throw e
    }
    this.lastCommitted = last
    this.o.log.debug({ transno: last, entries: batch.length, bytes, ms: Math.round(this.o.clock.now() - t0) }, 'committed')
    // Durable now: syncs need not wait for the backend's files or the checkpoint (nor fail with them).
    this.wake()
    // A checkpoint covers exactly this batch: later batches go to a new journal file from now on.
    const journalSeq = cut ? await this.journal.rotate() : 0
    // The backend applies batches (and cuts checkpoints) behind the journal, in order, while
    // the next batches commit: the journal's rate, not the files', paces last_committed.
    this.applyBacklog += bytes
    this.applying = this.applying.then(async () => {
      try {
        await this.backend.afterCommit(redo)
      } catch (e) {
        // The journal still holds the batch a restart will redo; it must never be cut away now.
        this.checkpointsOff = true
        this.o.log.error({ err: e }, 'applying a committed batch failed: no more checkpoints, the journal keeps everything')
        return
      } finally {
        this.applyBacklog -= bytes
      }
      if (cut && !this.checkpointsOff) await this.checkpoint(cut, last, journalSeq).catch((e) => this.o.log.error({ err: e }, 'checkpoint failed'))
    })
    // Memory holds what is committed but not applied yet: bounded, commits wait past it.
    if (this.applyBacklog > this.o.maxPendingBytes * 4) await this.applying
  }

  private wake(): void {
    const still: typeof this.waiters = []
    for (const w of this.waiters) (w.transno <= this.lastCommitted ? w.resolve() : still.push(w))
    this.waiters = still
  }

  /** Record the state at `transno`; journal files from `journalSeq` on hold everything after it. */
  private async checkpoint(cut: { lastrcvd: LastRcvdImage; backend: unknown }, transno: number, journalSeq: number): Promise<void> {
    const ref = await this.backend.persist(cut.backend, transno)
    const cp: CheckpointFile = { transno, journal_seq: journalSeq, lastrcvd: cut.lastrcvd, backend: ref }
    await writeFileAtomic(path.join(this.o.dir, CHECKPOINT), JSON.stringify(cp))
    await this.journal.dropBefore(journalSeq)
    await this.backend.afterCheckpoint(ref)
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

  /** Stop; a clean stop commits what is pending first (unless frozen by a barrier). */
  async close(clean: boolean): Promise<void> {
    if (clean) await this.commit()
    else await this.running?.catch(() => undefined)
    this.closed = true
    this.timer?.cancel()
    await this.running?.catch(() => undefined)
    await this.applying
    for (const w of this.waiters.splice(0)) w.reject(new LpError('ENODEV', 'target stopped before the commit'))
    await this.journal.close()
  }
}
