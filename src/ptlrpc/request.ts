import type { Timer } from '../common/clock.js'
import type { OpName } from '../protocol/ops.js'
import { bulkLength, type Bulk } from '../protocol/wire.js'

/**
 * One RPC as the import tracks it, from submission until it is answered and, when it
 * modified the target, until the target commits it (it stays on the replay list till then).
 */
export type ReqPhase = 'delayed' | 'inflight' | 'resend' | 'done'

export interface RpcReply<B = unknown> {
  body: B
  /** The reply's bulk, in the pieces it arrived in. */
  bulk: Buffer[]
  transno: number
}

export class PtlRequest {
  phase: ReqPhase = 'delayed'
  /** conn_cnt of the connection it was last sent on. */
  connCnt = 0
  /** Set once the target answered with a transno. */
  transno = 0
  reply: unknown = undefined
  /** It reached the wire at least once: a later send is a resend. */
  sent = false
  abort: AbortController | null = null
  deadline: Timer | null = null
  sentAt = 0
  resolve!: (r: RpcReply) => void
  reject!: (e: Error) => void
  readonly done: Promise<RpcReply>

  constructor(
    readonly xid: number,
    readonly op: OpName,
    readonly args: unknown,
    readonly bulk: Bulk | undefined,
    readonly generation: number,
    readonly modifying: boolean,
    readonly noDelay: boolean,
  ) {
    this.done = new Promise<RpcReply>((resolve, reject) => {
      this.resolve = resolve
      this.reject = reject
    })
  }

  get bytes(): number {
    return bulkLength(this.bulk)
  }

  stopTimers(): void {
    this.deadline?.cancel()
    this.deadline = null
  }
}
