/**
 * Driving a Target directly, in-process, the way the node's HTTP front does: headers built as
 * src/ptlrpc/import.ts builds them, arguments already validated, a real MDT or OST backend in
 * a temp directory, and an injected clock.
 */
import path from 'node:path'
import { silentLogger, type Logger } from '../../src/common/log.js'
import type { Clock } from '../../src/common/clock.js'
import { OPS, type OpName, type ConnectReply } from '../../src/protocol/ops.js'
import type { ReqFlag, ReqHeader } from '../../src/protocol/wire.js'
import { Target, type TargetTunables, type TargetReply } from '../../src/server/target/target.js'
import { MdtBackend, type ObjectDestroyer } from '../../src/server/mdt/mdt.js'
import { OstBackend } from '../../src/server/ost/ost.js'
import type { KeyClass } from '../../src/common/keyfile.js'

export const OST_NAME = 'spfs-OST0001'
export const MDT_NAME = 'spfs-MDT0000'

export function testTunables(over: Partial<TargetTunables> = {}): TargetTunables {
  return {
    obdTimeoutMs: 1_000_000,
    commitIntervalMs: 5_000,
    recoverySoftMs: 30_000,
    recoveryHardMs: 90_000,
    maxPendingBytes: 1 << 30,
    checkpointBytes: 1 << 30,
    imperativeRecovery: false,
    ...over,
  }
}

export interface OpenOptions {
  /** The target's directory (the backend lives in it too). */
  dir: string
  kind: 'mdt' | 'ost'
  clock: Clock
  log?: Logger
  replayable?: boolean
  tunables?: Partial<TargetTunables>
  /** Call target.start() (commit timer, evictor); default true. */
  start?: boolean
  /** MDT: what destroys the OST objects of removed files (none: they stay in the llog). */
  destroyer?: ObjectDestroyer
}

/** Open (load) a target as a node would, and start it. The backend is returned too. */
export async function openTarget(o: OpenOptions): Promise<{ target: Target; mdt?: MdtBackend; ost?: OstBackend }> {
  const log = o.log ?? silentLogger
  const base = { dir: o.dir, clock: o.clock, log, replayable: o.replayable ?? true, tunables: testTunables(o.tunables) }
  let target: Target
  let mdt: MdtBackend | undefined
  let ost: OstBackend | undefined
  if (o.kind === 'mdt') {
    mdt = new MdtBackend({ dir: path.join(o.dir, 'mdtfs'), clock: o.clock, destroyer: o.destroyer })
    target = await Target.open({ ...base, name: MDT_NAME, kind: 'mdt', backend: mdt })
    mdt.setInternalTxn((redo) => target.internalTxn(redo))
  } else {
    ost = new OstBackend(path.join(o.dir, 'ostfs'))
    target = await Target.open({ ...base, name: OST_NAME, kind: 'ost', backend: ost })
  }
  if (o.start !== false) target.start()
  return { target, mdt, ost }
}

/**
 * Bulk in uneven pieces, as a socket delivers a body: the target must never assume one
 * buffer, nor pieces aligned on pages.
 */
export function chunked(buf: Buffer, piece = 1000): Buffer[] {
  const out: Buffer[] = []
  for (let off = 0, i = 0; off < buf.length; i++) {
    const n = piece + (i % 3) * 17
    out.push(buf.subarray(off, off + n))
    off += n
  }
  return out
}

/** A failed RPC: the target's negative errno and message. */
export class RpcFailed extends Error {
  constructor(readonly reply: TargetReply) {
    super(`status ${reply.status}: ${reply.error ?? ''}`)
  }
}

/**
 * One client of one target: its uuid, xids, export handle and conn_cnt, as an import keeps
 * them. `call` sends an op and resolves with the reply (whatever its status); `ok` insists on
 * success.
 */
export class TestClient {
  xid = 0
  handle: string | undefined
  connCnt = 0
  /** xids sent but not answered yet (for last_xid). */
  readonly unanswered = new Set<number>()

  constructor(
    public target: Target,
    readonly uuid: string,
    /** The class of shared key its requests are signed with, as the front would say (null: a filesystem without a key). */
    readonly signer: KeyClass | null = null,
  ) {}

  header(op: OpName, o: { flags?: ReqFlag[]; xid?: number; transno?: number; lastXid?: number } = {}): ReqHeader {
    const xid = o.xid ?? ++this.xid
    let lastXid = o.lastXid
    if (lastXid === undefined) {
      const pending = [...this.unanswered].filter((x) => x !== xid)
      lastXid = Math.min(xid, ...pending) - 1
    }
    return { target: this.target.name, op, client: this.uuid, handle: this.handle, connCnt: this.connCnt, xid, lastXid, flags: o.flags ?? [], transno: o.transno }
  }

  async call(
    op: OpName,
    args: unknown = {},
    o: { flags?: ReqFlag[]; xid?: number; transno?: number; lastXid?: number; bulk?: Buffer; replayReply?: unknown } = {},
  ): Promise<TargetReply> {
    const h = this.header(op, o)
    // The front validates every request before a target sees it.
    const parsed = OPS[op].args.parse(args)
    this.unanswered.add(h.xid)
    try {
      return await this.target.handle(h, parsed, o.replayReply, chunked(o.bulk ?? Buffer.alloc(0)), undefined, this.signer)
    } finally {
      this.unanswered.delete(h.xid)
    }
  }

  async ok<B = Record<string, unknown>>(op: OpName, args: unknown = {}, o: Parameters<TestClient['call']>[2] = {}): Promise<TargetReply & { body: B }> {
    const r = await this.call(op, args, o)
    if (r.status !== 0) throw new RpcFailed(r)
    return r as TargetReply & { body: B }
  }

  /** Connect (a new connection: conn_cnt + 1), keeping the export handle for later requests. */
  async connect(): Promise<TargetReply & { body: ConnectReply }> {
    this.connCnt += 1
    const r = await this.ok<ConnectReply>('connect', this.handle ? { prev_handle: this.handle } : {})
    this.handle = r.body.handle
    return r
  }

  /** "Replay done" (a ping flagged replay_done): resolves when the target's recovery is over. */
  replayDone(): Promise<TargetReply> {
    return this.call('ping', {}, { flags: ['replay_done'] })
  }

  /** Connect, and if the target is recovering, replay nothing and wait for the end of recovery. */
  async connectAndRecover(): Promise<TargetReply & { body: ConnectReply }> {
    const r = await this.connect()
    if (r.body.recovering) {
      const done = await this.replayDone()
      if (done.status !== 0) throw new RpcFailed(done)
    }
    return r
  }
}
