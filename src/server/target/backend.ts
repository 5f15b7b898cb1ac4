import type { Logger } from '../../common/log.js'

/**
 * What a target's service (MDT, OST) plugs into the generic target: the target owns
 * transnos, the journal, last_rcvd, recovery and MMP; the backend owns its namespace or
 * objects and describes every change as redo records.
 */
export interface Redo {
  rec: Record<string, unknown>
  /** Bulk data the record refers to (journaled after the JSON), in the pieces it arrived in. */
  data?: Buffer[]
  /** The backend's own handle on the in-memory change (not journaled), for afterCommit. */
  ref?: unknown
}

export interface Applied {
  body: unknown
  redo: Redo[]
}

export interface QueryResult {
  body: unknown
  bulk?: Buffer
}

export interface OpContext {
  client: string
  /** The transno the request executes under (a replay's original one); 0 for a query. */
  transno: number
  /** Present on a replay: the reply the original execution produced. */
  replayReply?: unknown
  /** The request's bulk, in the pieces it arrived in. */
  bulk: Buffer[]
  /** Wall-clock ms, for timestamps. */
  now: number
  /** The NID the request came from (the socket's peer, never what the request says): root_squash's nosquash_nids. */
  peer?: string
}

export interface Backend {
  /** Load the state of the last checkpoint (undefined: freshly formatted). */
  load(checkpoint: unknown): Promise<void>
  /** Re-apply a committed redo record while replaying the journal at start. */
  redo(rec: Record<string, unknown>, data: Buffer): Promise<void>
  /**
   * Execute a modifying request. Synchronous so that transno order is execution order;
   * must validate everything first and throw (an LpError) with no effect at all.
   */
  apply(op: string, args: unknown, ctx: OpContext): Applied
  /**
   * Before a new (not replayed) modifying request executes: a promise to wait for when the
   * backend must first have something of its own committed (the MDT's next FID range).
   */
  prepare?(op: string, args: unknown): Promise<void> | undefined
  /** Execute a non-modifying request. */
  query(op: string, args: unknown, ctx: OpContext): Promise<QueryResult>
  /** A client left (disconnect or eviction): drop its state, as redo to commit. */
  dropClient(uuid: string, now: number): Redo[]
  /** Called after a batch is durable in the journal, with its redo in order. */
  afterCommit(redo: Redo[]): Promise<void>
  /** The state at this instant, taken synchronously when a checkpoint is cut. */
  snapshot(): unknown
  /** Make the checkpointed state durable; returns what CHECKPOINT should record. */
  persist(snapshot: unknown, transno: number): Promise<unknown>
  /**
   * A checkpoint is recorded. `live` holds what the checkpoints still on disk refer to (the
   * newest generation's and the previous one's): other snapshots may go.
   */
  afterCheckpoint(live: unknown[]): Promise<void>
  /**
   * Background work after the target serves (e.g. the MDT's object destroys). `own` commits
   * bookkeeping of the backend's own that no transno orders (the MDT's FID ranges).
   */
  start?(log: Logger, own: (redo: Redo[]) => void): void
  /** Recovery is over: every replayed change is in (e.g. the MDT may now look for orphan objects). */
  recovered?(): void
  close(): Promise<void>
}
