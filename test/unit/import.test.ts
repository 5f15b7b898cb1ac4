/**
 * The client import state machine (src/ptlrpc/import.ts) against a fake cluster: scripted
 * nodes and targets (test/helpers/fakepeer.ts), time driven by a ManualClock. Defaults are
 * Lustre's: obd_timeout 100 s, so a request's deadline is 100 s, a liveness ping's 5 s, the
 * first connect deadline 5 s, the DISCONN pause 5 s, the ping interval 25 s (7 s with requests
 * kept for replay).
 */
import { describe, it, expect, vi } from 'vitest'
import { ManualClock } from '../../src/common/clock.js'
import { errnoOf, type LpError } from '../../src/protocol/errno.js'
import type { OpName } from '../../src/protocol/ops.js'
import { PtlrpcClient } from '../../src/ptlrpc/client.js'
import { Import, type ImportState, type RequestOptions } from '../../src/ptlrpc/import.js'
import { PtlRequest, type RpcReply } from '../../src/ptlrpc/request.js'
import type { ReqBody, ReqHeader } from '../../src/protocol/wire.js'
import { TransportError, type RawReply, type Route } from '../../src/ptlrpc/transport.js'
import { Tunables } from '../../src/ptlrpc/tunables.js'
import { FakeNet, FakeTarget, type Sent } from '../helpers/fakepeer.js'
import { captureLogger } from '../helpers/log.js'

// Nothing here waits for real time: a test that takes seconds is spinning.
vi.setConfig({ testTimeout: 10_000 })

const A = 'oss1@tcp'
const B = 'oss2@tcp'
const C = 'oss3@tcp'
const SEC = 1000
const OBD = 100 * SEC
const UUID = 'client-1'

interface Outcome {
  settled: boolean
  reply?: RpcReply
  error?: LpError
  xid: number
}

function world(o: { nids?: string[]; timeout?: number; target?: FakeTarget; net?: (clock: ManualClock) => FakeNet; clock?: ManualClock; client?: PtlrpcClient } = {}) {
  const clock = o.clock ?? new ManualClock()
  const net = o.net?.(clock) ?? new FakeNet(clock)
  const cap = captureLogger('debug')
  const tunables = new Tunables()
  if (o.timeout) tunables.timeout = o.timeout
  const client = o.client ?? new PtlrpcClient(clock, cap.log, 988, { uuid: UUID, tunables, transport: net })
  const target = o.target ?? new FakeTarget()
  const nids = o.nids ?? [A, B]
  const imp = new Import({ client, target: target.name, name: `${target.name}-osc-test`, nids, log: cap.log })
  const states: ImportState[] = []
  imp.on('state', (s: ImportState) => states.push(s))
  const committed: number[] = []
  imp.on('committed', (n: number) => committed.push(n))
  const invalidations: string[] = []
  imp.on('invalidate', (why: string) => invalidations.push(why))

  /** Submit a request and record how it ends (never an unhandled rejection). */
  const req = (op: OpName = 'ost_getattr', args: unknown = { objects: [{ fid: 1, stripe: 0 }] }, opts: RequestOptions = {}): Outcome => {
    const out: Outcome = { settled: false, xid: client.lastXid + 1 }
    imp.request(op, args, opts).then(
      (r) => Object.assign(out, { settled: true, reply: r }),
      (e: LpError) => Object.assign(out, { settled: true, error: e }),
    )
    return out
  }
  const write = (len = 4096, fill = 1) => req('ost_write', { fid: 1, stripe: 0, offset: 0 }, { bulk: Buffer.alloc(len, fill) })
  const settle = () => clock.advance(0)
  /** Connect through the first NID and reach FULL. */
  const full = async () => {
    net.node(nids[0]!).up(target)
    imp.connect()
    await settle()
    expect(imp.state).toBe('FULL')
  }
  const connects = () => net.ops('connect').map((s) => [s.nid, s.at])
  const errors = (level = 50) => cap.lines.filter((l) => l.level >= level).map((l) => l.msg)
  return { clock, net, target, imp, client, tunables, cap, states, committed, invalidations, req, write, settle, full, connects, errors }
}

type World = ReturnType<typeof world>

/** What reached the network for one xid, in order. */
const sentFor = (w: World, xid: number): Sent[] => w.net.sent.filter((s) => s.h.xid === xid)
const count = <T>(xs: T[], x: T) => xs.filter((y) => y === x).length

/** The next ost_getattr gets this status from the target. */
function scriptOnce(w: World, status: number): void {
  let n = 0
  w.target.intercept = (h) => (h.op === 'ost_getattr' && n++ === 0 ? { status, error: 'scripted' } : undefined)
}

/**
 * FULL at 0; a write at 1 s that the target never answers; a quick request at 13 s, which puts
 * the pinger's own pings (25 s after the last traffic) away from the write's deadlines (101 s, 201 s).
 */
async function slowWrite(w: World): Promise<Outcome> {
  await w.full()
  await w.clock.advance(1 * SEC)
  const slow = w.write()
  w.target.holdReplies = (h) => h.xid === slow.xid
  await w.clock.advance(12 * SEC)
  w.req()
  await w.settle()
  return slow
}

describe('connection selection and connect deadlines', () => {
  it('tries the first untried NID, then the least recently tried; the winner moves to the head', async () => {
    const w = world({ nids: [A, B, C] })
    w.imp.connect()
    await w.settle()
    // All down: each refuses at once, so one cycle takes no time; then the DISCONN pause.
    expect(w.connects()).toEqual([[A, 0], [B, 0], [C, 0]])
    expect(w.imp.state).toBe('DISCONN')
    await w.clock.advance(5 * SEC - 1)
    expect(w.connects()).toHaveLength(3)
    await w.clock.advance(1)
    expect(w.connects().slice(3)).toEqual([[A, 5 * SEC], [B, 5 * SEC], [C, 5 * SEC]])

    w.net.node(B).up(w.target)
    await w.clock.advance(5 * SEC)
    expect(w.connects().slice(6)).toEqual([[A, 10 * SEC], [B, 10 * SEC]])
    expect(w.imp.state).toBe('FULL')
    expect(w.imp.currentNid).toBe(B)
    expect(w.imp.conns.map((c) => c.nid)).toEqual([B, A, C])

    // Losing B: every NID is untried again, so B (now first) is tried first, then A and C, at once.
    w.net.node(B).down()
    const r = w.req()
    await w.settle()
    expect(w.connects().slice(8)).toEqual([[B, 10 * SEC], [A, 10 * SEC], [C, 10 * SEC]])
    // C comes up: the next cycle reaches it after the pause; the request was waiting for it.
    w.net.node(C).up(w.target)
    await w.clock.advance(5 * SEC)
    expect(w.connects().slice(11)).toEqual([[B, 15 * SEC], [A, 15 * SEC], [C, 15 * SEC]])
    expect(w.imp.conns.map((c) => c.nid)).toEqual([C, B, A])
    expect(r.reply).toBeDefined()
  })

  it('a NID that does not answer holds the cycle for its connect deadline; the next cycle starts from the least recently tried', async () => {
    const w = world({ nids: [A, B, C] })
    w.net.node(A).hang()
    w.net.node(C).hang()
    w.imp.connect()
    await w.clock.advance(15 * SEC)
    // A waits out its 5 s deadline, B refuses at once, C waits 5 s; the pause; then again from A.
    expect(w.connects()).toEqual([[A, 0], [B, 5 * SEC], [C, 5 * SEC], [A, 15 * SEC]])
    expect(w.net.ops('connect').slice(0, 3).map((s) => s.outcome)).toEqual(['timeout', 'conn', 'timeout'])
  })

  it('grows the connect deadline by 5 s per full cycle up to 50 s more, with a 5 s DISCONN pause between cycles', async () => {
    const w = world({ nids: [A, B] })
    w.net.node(A).hang()
    w.net.node(B).hang()
    w.imp.connect()
    await w.clock.advance(1500 * SEC)
    const cs = w.net.ops('connect')
    let t = 0
    for (let k = 0; k < 13; k++) {
      const deadline = 5 * SEC + Math.min(50 * SEC, 5 * SEC * k)
      for (const [i, nid] of [A, B].entries()) {
        const c = cs[2 * k + i]!
        expect({ k, nid: c.nid, at: c.at, outcome: c.outcome, waited: c.endedAt! - c.at }).toEqual({ k, nid, at: t, outcome: 'timeout', waited: deadline })
        t += deadline
      }
      t += 5 * SEC
    }
    // Each attempt is a new connection: conn_cnt counts them.
    expect(cs.slice(0, 4).map((c) => c.h.connCnt)).toEqual([1, 2, 3, 4])
    expect(w.imp.connectionAttempts).toBe(cs.length)
    expect(w.states.slice(0, 4)).toEqual(['CONNECTING', 'DISCONN', 'CONNECTING', 'DISCONN'])
  })

  it('starts from INITIAL_CONNECT_TIMEOUT = max(5 s, obd_timeout/20)', async () => {
    const w = world({ nids: [A], timeout: 300 })
    w.net.node(A).hang()
    w.imp.connect()
    await w.clock.advance(15 * SEC - 1)
    expect(w.net.ops('connect')[0]!.outcome).toBeUndefined()
    await w.clock.advance(1)
    expect(w.net.ops('connect')[0]!.outcome).toBe('timeout')
  })

  it('kick(nid) (imperative recovery) moves the NID to the head and ends the DISCONN pause at once', async () => {
    const w = world({ nids: [A, B, C] })
    w.imp.connect()
    await w.settle()
    expect(w.imp.state).toBe('DISCONN')
    w.net.node(C).up(w.target)
    await w.clock.advance(1 * SEC)
    w.imp.kick(C)
    await w.settle()
    expect(w.connects().slice(3)).toEqual([[C, 1 * SEC]])
    expect(w.imp.state).toBe('FULL')
    expect(w.imp.conns.map((c) => c.nid)).toEqual([C, A, B])
  })

  it('kick(nid) of a NID not in the list adds it at the head and connects there', async () => {
    const w = world({ nids: [A, B] })
    w.imp.connect()
    await w.settle()
    expect(w.imp.state).toBe('DISCONN')
    w.net.node(C).up(w.target)
    w.imp.kick(C)
    await w.settle()
    expect(w.imp.state).toBe('FULL')
    expect(w.imp.conns.map((c) => c.nid)).toEqual([C, A, B])
  })

  it('keeps trying a NID that refuses with EBUSY (a recovering target that does not know us) until it accepts', async () => {
    const w = world({ nids: [A] })
    w.target.busy = true
    w.net.node(A).up(w.target)
    w.imp.connect()
    await w.clock.advance(12 * SEC)
    expect(w.connects()).toEqual([[A, 0], [A, 5 * SEC], [A, 10 * SEC]])
    expect(w.imp.state).toBe('DISCONN')
    w.target.busy = false
    await w.clock.advance(3 * SEC)
    expect(w.imp.state).toBe('FULL')
  })
})

describe('state transitions', () => {
  it('NEW -> CONNECTING -> FULL, with the state history and the export handle in later headers', async () => {
    const w = world()
    expect(w.imp.state).toBe('NEW')
    expect(w.imp.history).toEqual([{ state: 'NEW', time: w.clock.wallNow() }])
    await w.clock.advance(3 * SEC)
    await w.full()
    expect(w.states).toEqual(['CONNECTING', 'FULL'])
    expect(w.imp.history).toEqual([
      { state: 'NEW', time: w.clock.wallNow() - 3 * SEC },
      { state: 'CONNECTING', time: w.clock.wallNow() },
      { state: 'FULL', time: w.clock.wallNow() },
    ])
    const [c] = w.net.ops('connect')
    expect(c!.h).toMatchObject({ op: 'connect', client: UUID, connCnt: 1, target: w.target.name })
    expect(c!.h.handle).toBeUndefined()
    expect(c!.body.a).toEqual({})
    const r = w.req()
    await w.settle()
    expect(r.reply).toBeDefined()
    expect(w.net.rpcs[0]!.h).toMatchObject({ handle: w.target.exports.get(UUID)!.handle, connCnt: 1, flags: [] })
  })

  // The last column: the connections to A dropped, or kept because A answered.
  const failures: Array<[string, (w: World) => void, string[], string[]]> = [
    ['a refused connection', (w) => void w.net.node(A).down(), [A, A, B], [A]],
    [
      'a reset connection',
      (w) => {
        w.target.holdReplies = (h) => h.op === 'ost_getattr' && !h.flags.includes('resend')
        queueMicrotask(() => void w.net.node(A).down())
      },
      [A, A, B],
      [A],
    ],
    ['ENOTCONN', (w) => scriptOnce(w, -errnoOf('ENOTCONN')), [A, A], []],
    ['ENODEV', (w) => scriptOnce(w, -errnoOf('ENODEV')), [A, A], []],
    ['HTTP 404 (target not on that node)', (w) => void w.net.node(A).absent(), [A, A, B], []],
  ]

  it.each(failures)('FULL -> DISCONN on %s for a request of the current conn_cnt; the request is resent', async (_, fail, nids, dropped) => {
    const w = world()
    await w.full()
    w.net.node(B).up(w.target)
    fail(w)
    const r = w.req()
    await w.settle()
    expect(w.states).toEqual(['CONNECTING', 'FULL', 'DISCONN', 'CONNECTING', 'RECOVER', 'FULL'])
    expect(w.net.ops('connect').map((s) => s.nid)).toEqual(nids)
    // The reconnect presented the export handle, and the target still knew it: no eviction.
    expect(w.net.ops('connect')[1]!.body.a).toEqual({ prev_handle: w.target.exports.get(UUID)!.handle })
    expect(w.invalidations).toEqual([])
    // A peer that did not answer has its connections dropped, so the next attempt dials
    // afresh; one that answered keeps them (other imports to that node use them too).
    expect(w.net.resets.filter((n) => n === A).slice(0, 1)).toEqual(dropped)
    expect(r.reply).toBeDefined()
    expect(sentFor(w, r.xid).map((s) => s.h.flags)).toEqual([[], ['resend']])
    expect(sentFor(w, r.xid)[1]!.h.connCnt).toBe(nids.length)
  })

  it("a node's refusal of a connect (HTTP 404: it does not serve the target yet) leaves its connections up; a node that does not answer loses them", async () => {
    const w = world()
    w.net.node(A).absent()
    w.net.node(B).up(w.target)
    w.imp.connect()
    await w.settle()
    expect(w.imp.state).toBe('FULL')
    expect(w.net.ops('connect').map((s) => s.nid)).toEqual([A, B])
    expect(w.net.resets).toEqual([])
    w.net.node(B).down()
    w.req()
    await w.settle()
    expect(w.net.resets.length).toBeGreaterThan(0)
    expect(new Set(w.net.resets)).toEqual(new Set([B]))
  })

  it('a request the node refuses (HTTP 400) fails with its errno; the connection stays up', async () => {
    const w = world()
    await w.full()
    w.net.node(A).refuse = (h) => (h.op === 'ost_getattr' ? new TransportError('refused', 'invalid arguments for ost_getattr', 400, -errnoOf('EINVAL')) : undefined)
    const r = w.req()
    await w.settle()
    expect(r.error?.code).toBe('EINVAL')
    expect(r.error?.message).toBe('invalid arguments for ost_getattr')
    expect(w.imp.state).toBe('FULL')
    expect(w.states).toEqual(['CONNECTING', 'FULL'])
    expect(sentFor(w, r.xid)).toHaveLength(1)
  })

  it('fails the import once for a burst of failures of one connection', async () => {
    const w = world()
    await w.full()
    w.net.node(B).up(w.target)
    w.target.holdReplies = (h) => h.op === 'ost_getattr' && !h.flags.includes('resend')
    const rs = [w.req(), w.req(), w.req()]
    await w.settle()
    w.net.node(A).down()
    await w.settle()
    expect(count(w.states, 'DISCONN')).toBe(1)
    expect(w.net.ops('connect').map((s) => s.nid)).toEqual([A, A, B])
    expect(rs.every((r) => r.reply)).toBe(true)
    expect(w.net.rpcs.filter((s) => s.h.flags.includes('resend')).map((s) => s.h.xid)).toEqual(rs.map((r) => r.xid))
  })

  it('a liveness ping missed on an older connection does not fail the current one', async () => {
    const w = world()
    const slow = await slowWrite(w)
    // The ping the write's deadline triggers is not answered either (for now).
    const deadline = OBD + 1 * SEC
    w.target.holdReplies = (h) => h.xid === slow.xid || (h.op === 'ping' && w.clock.now() === deadline)
    await w.clock.advance(deadline - w.clock.now())
    const [live] = w.net.ops('ping').filter((s) => s.at === deadline)
    expect(live?.outcome).toBeUndefined()
    expect(w.imp.timeouts).toBe(1)
    // Meanwhile another request learns that the connection is gone: reconnect (conn_cnt 2), resend.
    scriptOnce(w, -errnoOf('ENOTCONN'))
    const other = w.req()
    await w.settle()
    expect(w.imp.state).toBe('FULL')
    expect(w.imp.connCnt).toBe(2)
    expect(other.reply).toBeDefined()
    expect(sentFor(w, slow.xid).map((s) => [s.h.connCnt, s.h.flags])).toEqual([[1, []], [2, ['resend']]])
    // The old ping misses its 5 s deadline: that says nothing about connection 2.
    await w.clock.advance(5 * SEC)
    expect(live!.outcome).toBe('timeout')
    expect(count(w.states, 'DISCONN')).toBe(1)
    expect(w.imp.state).toBe('FULL')
    expect(w.net.ops('connect')).toHaveLength(2)
  })

  it('a liveness ping answered after a reconnect does not arm a second deadline', async () => {
    const w = world()
    const slow = await slowWrite(w)
    const deadline = OBD + 1 * SEC
    w.target.holdReplies = (h) => h.xid === slow.xid || (h.op === 'ping' && w.clock.now() === deadline)
    await w.clock.advance(deadline - w.clock.now())
    scriptOnce(w, -errnoOf('ENOTCONN'))
    w.req()
    await w.settle()
    const resentAt = w.clock.now()
    expect(sentFor(w, slow.xid).map((s) => s.at)).toEqual([1 * SEC, resentAt])
    // The old ping is answered now; the resent write keeps its single deadline, 100 s after the resend.
    await w.clock.advance(2 * SEC)
    w.target.holdReplies = (h) => h.xid === slow.xid
    w.target.releaseReplies((h) => h.op === 'ping')
    await w.clock.advance(OBD - 2 * SEC - 1)
    expect(w.imp.timeouts).toBe(1)
    await w.clock.advance(1)
    expect(w.imp.timeouts).toBe(2)
    await w.clock.advance(10 * SEC)
    expect(w.imp.timeouts).toBe(2)
    expect(w.imp.state).toBe('FULL')
  })
})

describe('the request gate', () => {
  it('while not FULL, ordinary requests wait on the delayed list with no timeout, then go out once', async () => {
    const w = world()
    w.imp.connect()
    await w.settle()
    expect(w.imp.state).toBe('DISCONN')
    const r = w.write()
    await w.clock.advance(3 * OBD)
    expect(r.settled).toBe(false)
    expect(w.imp.delayedCount).toBe(1)
    expect(w.net.rpcs).toHaveLength(0)
    w.net.node(B).up(w.target)
    await w.clock.advance(5 * SEC)
    expect(w.imp.state).toBe('FULL')
    expect(r.reply?.transno).toBe(1)
    expect(w.imp.delayedCount).toBe(0)
    expect(w.net.rpcs.map((s) => s.h.flags)).toEqual([[]])
  })

  it('"no delay" requests get EAGAIN while not FULL, including one in flight when the connection is lost', async () => {
    const w = world()
    w.net.node(A).hang()
    w.imp.connect()
    await w.settle()
    expect(w.imp.state).toBe('CONNECTING')
    const connecting = w.req('statfs', {}, { noDelay: true })
    await w.clock.advance(7 * SEC)
    expect(w.imp.state).toBe('DISCONN')
    const disconn = w.req('statfs', {}, { noDelay: true })
    await w.settle()
    expect([connecting.error?.code, disconn.error?.code]).toEqual(['EAGAIN', 'EAGAIN'])

    w.net.node(A).up(w.target)
    await w.clock.advance(5 * SEC)
    expect(w.imp.state).toBe('FULL')
    w.target.holdReplies = (h) => h.op === 'statfs' || h.op === 'ost_getattr'
    const df = w.req('statfs', {}, { noDelay: true })
    const ordinary = w.req()
    await w.settle()
    w.net.node(A).down()
    await w.settle()
    expect(w.imp.state).not.toBe('FULL')
    expect(df.error?.code).toBe('EAGAIN')
    expect(ordinary.settled).toBe(false)
  })

  it('a NEW or CLOSED import fails requests with EIO; an invalid one with ESHUTDOWN', async () => {
    const w = world()
    const early = w.req()
    await w.full()
    w.imp.deactivate()
    const invalid = w.req()
    w.imp.activate()
    await w.settle()
    expect(w.imp.state).toBe('FULL')
    await w.imp.close()
    const late = w.req()
    await w.settle()
    expect([early.error?.code, invalid.error?.code, late.error?.code]).toEqual(['EIO', 'ESHUTDOWN', 'EIO'])
    expect(w.net.ops('disconnect')).toHaveLength(1)
  })

  it('a request of an older generation fails with EIO', async () => {
    const w = world()
    await w.full()
    const old = new PtlRequest(w.client.nextXid(), 'ost_getattr', {}, undefined, w.imp.generation, false, false)
    let error: LpError | undefined
    old.done.catch((e: LpError) => (error = e))
    w.imp.deactivate()
    w.imp.activate()
    await w.settle()
    expect(w.imp.state).toBe('FULL')
    expect(w.imp.generation).toBe(1)
    // The gate itself (an older request reaching it after an invalidation).
    ;(w.imp as unknown as { submit(r: PtlRequest): void }).submit(old)
    await w.settle()
    expect(error?.code).toBe('EIO')
    expect(sentFor(w, old.xid)).toHaveLength(0)
  })
})

describe('the replay list', () => {
  it('keeps requests answered above last_committed, with their data, until last_committed covers them', async () => {
    const w = world()
    await w.full()
    const w1 = w.write(4096, 1)
    const w2 = w.write(1000, 2)
    const read = w.req('ost_read', { fid: 1, stripe: 0, offset: 0, length: 10 })
    await w.settle()
    expect([w1.reply?.transno, w2.reply?.transno, read.reply?.transno]).toEqual([1, 2, 0])
    expect(w.imp.replayList.map((r) => [r.transno, r.bytes])).toEqual([[1, 4096], [2, 1000]])
    expect(w.imp.keptBytes).toBe(5096)
    expect(w.imp.replayList[0]!.bulk).toEqual(Buffer.alloc(4096, 1))

    w.target.commit(1)
    w.req()
    await w.settle()
    expect(w.imp.peerCommitted).toBe(1)
    expect(w.committed).toEqual([4096])
    expect(w.imp.replayList.map((r) => r.transno)).toEqual([2])
    expect(w.imp.keptBytes).toBe(1000)

    // A ping's reply is as good as any.
    w.target.commit()
    await w.clock.advance(25 * SEC)
    expect(w.net.ops('ping').length).toBeGreaterThan(0)
    expect(w.committed).toEqual([4096, 1000])
    expect(w.imp.keptBytes).toBe(0)
    expect(w.imp.replayList).toEqual([])
  })

  it('a reply that is already committed, or a failed one, is not kept', async () => {
    const w = world()
    await w.full()
    w.target.intercept = (h) => (h.op === 'ost_punch' ? { status: -errnoOf('ENOSPC') } : undefined)
    const failed = w.req('ost_punch', { fid: 1, stripe: 0, size: 0 })
    w.target.syncWrites = true
    const synced = w.write()
    await w.settle()
    expect(failed.error?.code).toBe('ENOSPC')
    expect(synced.reply?.transno).toBe(1)
    expect(w.imp.peerCommitted).toBe(1)
    expect(w.imp.replayList).toEqual([])
    expect(w.imp.keptBytes).toBe(0)
  })

  it('after reconnecting to a recovering target: replays in transno order, "replay done", resends in xid order, then delayed requests', async () => {
    const w = world()
    await w.full()
    const ws = [w.write(100, 1), w.write(200, 2), w.write(300, 3)]
    await w.settle()
    w.target.commit(1)
    w.req()
    await w.settle()
    expect(w.imp.replayList.map((r) => r.transno)).toEqual([2, 3])

    // Two more go out but A has gone silent: neither executes nor is answered.
    w.net.node(A).hang()
    const lost = [w.write(400, 4), w.req()]
    await w.settle()
    // A crashes, losing transnos 2 and 3; B takes the target over, in recovery.
    w.target.restart({ recover: true })
    w.net.node(B).up(w.target)
    w.net.node(A).down()
    await w.settle()
    expect(w.imp.state).toBe('REPLAY_WAIT')
    expect(w.imp.currentNid).toBe(B)
    const later = w.req()
    await w.settle()
    expect(later.settled).toBe(false)

    const onB = () => w.net.sent.filter((s) => s.nid === B)
    expect(onB().map((s) => [s.h.op, s.h.xid, s.h.flags, s.h.transno])).toEqual([
      ['connect', expect.any(Number), [], undefined],
      ['ost_write', ws[1]!.xid, ['replay'], 2],
      ['ost_write', ws[2]!.xid, ['replay'], 3],
      ['ping', expect.any(Number), ['replay_done'], undefined],
    ])
    const replay2 = onB()[1]!
    expect(replay2.body).toEqual({ a: { fid: 1, stripe: 0, offset: 0 }, r: ws[1]!.reply!.body })
    expect(replay2.bulk).toEqual(Buffer.alloc(200, 2))
    expect(w.imp.lastReplayTransno).toBe(3)
    // One at a time: each replay went out only after the previous one was answered.
    expect(onB()[2]!.at).toBeGreaterThanOrEqual(onB()[1]!.endedAt!)

    w.target.endRecovery()
    await w.settle()
    expect(w.imp.state).toBe('FULL')
    expect(onB().slice(4).map((s) => [s.h.xid, s.h.flags])).toEqual([
      [lost[0]!.xid, ['resend']],
      [lost[1]!.xid, ['resend']],
      [later.xid, []],
    ])
    expect(w.states.slice(-7)).toEqual(['DISCONN', 'CONNECTING', 'REPLAY', 'REPLAY_LOCKS', 'REPLAY_WAIT', 'RECOVER', 'FULL'])
    expect(w.imp.history.slice(-5).map((h) => h.state)).toEqual(['REPLAY', 'REPLAY_LOCKS', 'REPLAY_WAIT', 'RECOVER', 'FULL'])
    expect(w.target.executed.map((e) => [e.transno, e.replay])).toEqual([
      [1, false],
      [2, false],
      [3, false],
      [2, true],
      [3, true],
      [4, false],
    ])
    expect([lost[0]!.reply?.transno, lost[1]!.reply, later.reply]).toEqual([4, expect.anything(), expect.anything()])
    // Still kept until the new target commits them.
    expect(w.imp.replayList.map((r) => r.transno)).toEqual([2, 3, 4])
    expect(w.invalidations).toEqual([])
    // What get_param *.import and /metrics count of it: two replays of 500 bytes, two resends, two FULLs.
    expect(w.imp.stats).toMatchObject({ replayedRequests: 2, replayedBytes: 500, resends: 2 })
    expect(w.imp.stats.entered.get('FULL')).toBe(2)
    expect(w.imp.stats.transitions).toBe(w.states.length)
  })

  it('logs loudly when the target went back in time', async () => {
    const w = world()
    await w.full()
    w.write()
    w.write()
    w.write()
    await w.settle()
    w.target.commit(3)
    w.req()
    await w.settle()
    expect(w.imp.peerCommitted).toBe(3)
    // Restarted in place, having lost two committed transactions.
    w.target.restart({ recover: true, lastCommitted: 1 })
    w.req()
    await w.settle()
    expect(w.imp.state).toBe('REPLAY_WAIT')
    expect(w.errors().filter((m) => m.includes('went back in time'))).toEqual([
      `${w.target.name}: went back in time (transno 3 was previously committed, server now claims 1)! See https://bugzilla.lustre.org/show_bug.cgi?id=9646`,
    ])
    w.target.endRecovery()
    await w.settle()
    expect(w.imp.state).toBe('FULL')
  })
})

describe('liveness (decided question 2)', () => {
  it('a request past its deadline triggers a ping; while the peer answers, the request keeps waiting', async () => {
    const w = world()
    const r = await slowWrite(w)
    const liveness = () => w.net.ops('ping').filter((s) => (s.at - 1 * SEC) % OBD === 0)
    await w.clock.advance(OBD + 1 * SEC - 1 - w.clock.now())
    expect(liveness()).toHaveLength(0)
    expect(w.imp.timeouts).toBe(0)
    await w.clock.advance(1)
    expect(liveness().map((s) => [s.at, s.outcome])).toEqual([[OBD + 1 * SEC, 'reply 0']])
    await w.clock.advance(OBD)
    expect(liveness().map((s) => s.at)).toEqual([OBD + 1 * SEC, 2 * OBD + 1 * SEC])
    expect(w.imp.timeouts).toBe(2)
    expect(w.imp.state).toBe('FULL')
    expect(w.states).not.toContain('DISCONN')
    expect(w.net.ops('connect')).toHaveLength(1)
    expect(r.settled).toBe(false)
    w.target.releaseReplies()
    await w.settle()
    expect(r.reply?.transno).toBe(1)
    expect(sentFor(w, r.xid)).toHaveLength(1)
  })

  it('a missed ping fails the import; the request is resent after reconnecting', async () => {
    const w = world()
    await w.full()
    w.net.node(B).up(w.target)
    await w.clock.advance(1 * SEC)
    w.net.node(A).hang()
    const r = w.write()
    await w.clock.advance(OBD)
    const [ping] = w.net.ops('ping', A).filter((s) => s.at === OBD + 1 * SEC)
    expect(ping).toBeDefined()
    await w.clock.advance(5 * SEC - 1)
    expect(w.imp.state).toBe('FULL')
    await w.clock.advance(1)
    expect(ping!.outcome).toBe('timeout')
    expect(w.imp.state).toBe('CONNECTING')
    // A, first in the list, gets its 5 s connect deadline; then B answers.
    await w.clock.advance(5 * SEC)
    expect(w.imp.state).toBe('FULL')
    expect(w.states).toEqual(['CONNECTING', 'FULL', 'DISCONN', 'CONNECTING', 'RECOVER', 'FULL'])
    expect(sentFor(w, r.xid).map((s) => [s.nid, s.h.flags, s.h.connCnt])).toEqual([
      [A, [], 1],
      [B, ['resend'], 3],
    ])
    expect(r.reply?.transno).toBe(1)
  })
  it('a replay or "replay done" the target holds past the deadline is waited for, not sent again, while pings answer', async () => {
    const w = world()
    await w.full()
    w.write()
    await w.settle()
    w.target.restart({ recover: true })
    w.target.holdReplies = (h) => h.flags.includes('replay')
    w.req()
    await w.settle()
    expect(w.imp.state).toBe('REPLAY')
    const since = w.clock.now()
    await w.clock.advance(250 * SEC)
    const recoverySends = (flag: 'replay' | 'replay_done') => w.net.sent.filter((s) => s.h.flags.includes(flag))
    expect(recoverySends('replay')).toHaveLength(1)
    expect(w.target.executed.filter((e) => e.replay)).toHaveLength(1)
    // The peer was asked at each deadline, and answered.
    expect(w.net.ops('ping').map((s) => s.at - since)).toEqual([OBD, 2 * OBD])
    expect(w.imp.state).toBe('REPLAY')
    w.target.releaseReplies()
    await w.settle()
    expect(w.imp.state).toBe('REPLAY_WAIT')
    // Recovery waits for other clients much longer than obd_timeout.
    await w.clock.advance(250 * SEC)
    expect(recoverySends('replay_done')).toHaveLength(1)
    expect(w.imp.state).toBe('REPLAY_WAIT')
    w.target.endRecovery()
    await w.settle()
    expect(w.imp.state).toBe('FULL')
    expect(count(w.states, 'DISCONN')).toBe(1)
  })

  it('a replay whose peer stops answering fails the connection; a restarted target gets the whole replay again', async () => {
    const w = world()
    await w.full()
    w.write()
    w.write()
    await w.settle()
    w.target.restart({ recover: true })
    w.target.holdReplies = (h) => h.flags.includes('replay') && h.transno === 2
    w.req()
    await w.settle()
    expect(w.imp.state).toBe('REPLAY')
    // A dies in the middle; its partner B restarts the target (a new instance, in recovery again).
    w.net.node(A).hang()
    w.target.holdReplies = null
    w.target.restart({ recover: true })
    w.net.node(B).up(w.target)
    await w.clock.advance(OBD + 5 * SEC)
    expect(w.imp.state).toBe('CONNECTING')
    await w.clock.advance(5 * SEC)
    expect(w.imp.state).toBe('REPLAY_WAIT')
    expect(w.net.sent.filter((s) => s.h.flags.includes('replay')).map((s) => [s.nid, s.h.transno])).toEqual([
      [A, 1],
      [A, 2],
      [B, 1],
      [B, 2],
    ])
  })
  it('a connection lost during replay resumes after the last acknowledged replay when the same target instance answers again', async () => {
    const w = world({ nids: [A] })
    await w.full()
    w.write()
    w.write()
    w.write()
    await w.settle()
    w.target.restart({ recover: true })
    w.target.holdReplies = (h) => h.flags.includes('replay') && h.transno === 2
    w.req()
    await w.settle()
    expect(w.imp.state).toBe('REPLAY')
    expect(w.imp.lastReplayTransno).toBe(1)
    // A network blip: the ping at the replay's deadline is missed, then A (same instance) answers again.
    w.net.node(A).hang()
    await w.clock.advance(OBD + 5 * SEC)
    expect(w.imp.state).toBe('CONNECTING')
    w.target.holdReplies = null
    w.net.node(A).up()
    await w.clock.advance(10 * SEC)
    expect(w.imp.state).toBe('REPLAY_WAIT')
    // Transno 1 was acknowledged by this instance: not sent again; 2 had no answer: sent again.
    expect(w.net.sent.filter((s) => s.h.flags.includes('replay')).map((s) => s.h.transno)).toEqual([1, 2, 2, 3])
    expect(w.imp.lastReplayTransno).toBe(3)
    w.target.endRecovery()
    await w.settle()
    expect(w.imp.state).toBe('FULL')
  })
})

describe('eviction', () => {
  it('a reconnect answered with a new handle (the target forgot us) takes the EVICTED path', async () => {
    const w = world()
    await w.full()
    const oldHandle = w.target.exports.get(UUID)!.handle
    const kept = w.write(4096)
    w.target.holdReplies = (h) => h.op === 'ost_getattr'
    const inflight = w.req()
    await w.settle()
    expect(w.imp.keptBytes).toBe(4096)
    // The target restarts without recovery (its clients are gone) while A is down.
    w.target.restart({ recover: false })
    w.target.holdReplies = null
    w.net.node(A).down()
    await w.settle()
    expect(w.imp.state).toBe('DISCONN')
    const queued = w.req()
    await w.settle()
    expect(w.imp.delayedCount).toBe(2)
    w.net.node(A).up()
    await w.clock.advance(5 * SEC)

    expect(w.imp.state).toBe('FULL')
    expect(w.states.slice(-4)).toEqual(['CONNECTING', 'EVICTED', 'RECOVER', 'FULL'])
    expect([inflight.error?.code, queued.error?.code]).toEqual(['EIO', 'EIO'])
    expect(kept.reply?.transno).toBe(1)
    expect(w.imp.replayList).toEqual([])
    expect(w.imp.keptBytes).toBe(0)
    expect(w.committed).toEqual([4096])
    expect(w.invalidations).toEqual(['evicted'])
    expect(w.imp.generation).toBe(1)
    expect(w.imp.invalid).toBe(false)
    expect(w.errors().some((m) => m.includes('This client was evicted by'))).toBe(true)
    // Nothing of the old connection is resent.
    expect(sentFor(w, inflight.xid)).toHaveLength(1)
    expect(sentFor(w, queued.xid)).toHaveLength(0)

    const fresh = w.write()
    await w.settle()
    expect(fresh.reply?.transno).toBe(1)
    const newHandle = w.target.exports.get(UUID)!.handle
    expect(newHandle).not.toBe(oldHandle)
    expect(sentFor(w, fresh.xid)[0]!.h.handle).toBe(newHandle)
  })

  it('a replay the target rejects ends replay: the EVICTED path, no endless loop (decided question 10)', async () => {
    const w = world({ nids: [A] })
    await w.full()
    w.write()
    w.write()
    w.write()
    await w.settle()
    w.target.restart({ recover: true })
    w.target.rejectReplays.add(2)
    const r = w.req()
    await w.settle()
    const replays = () => w.net.sent.filter((s) => s.h.flags.includes('replay')).map((s) => s.h.transno)
    expect(replays()).toEqual([1, 2])
    expect(w.states).toContain('EVICTED')
    expect(r.error?.code).toBe('EIO')
    expect(w.imp.replayList).toEqual([])
    expect(w.invalidations).toEqual(['replay rejected'])
    // The target evicted us and is still in recovery: reconnects are refused with EBUSY.
    await w.clock.advance(60 * SEC)
    expect(replays()).toEqual([1, 2])
    expect(w.imp.state).not.toBe('FULL')
    expect(w.net.ops('connect').slice(2).every((s) => s.outcome === `reply ${-errnoOf('EBUSY')}`)).toBe(true)
    const during = w.req()
    await w.settle()
    expect(during.error?.code).toBe('ESHUTDOWN')

    w.target.endRecovery()
    await w.clock.advance(5 * SEC)
    expect(w.imp.state).toBe('FULL')
    expect(replays()).toEqual([1, 2])
    const after = w.write()
    await w.settle()
    expect(after.reply?.transno).toBe(2)
  })

  it('a replay refused by the node (HTTP 400) ends replay too, instead of reconnecting and replaying it again', async () => {
    const w = world({ nids: [A] })
    await w.full()
    w.write()
    w.write()
    await w.settle()
    w.target.restart({ recover: true })
    let refusals = 0
    w.net.node(A).refuse = (h) => {
      if (!h.flags.includes('replay') || h.transno !== 2) return undefined
      // (Should the client loop, stop it here rather than spin forever on promises.)
      if (++refusals > 3) w.net.node(A).down()
      return new TransportError('refused', 'invalid arguments for ost_write', 400, -errnoOf('EINVAL'))
    }
    w.req()
    await w.clock.advance(60 * SEC)
    const replays = w.net.sent.filter((s) => s.h.flags.includes('replay')).map((s) => s.h.transno)
    expect(replays).toEqual([1, 2])
    expect(w.states).toContain('EVICTED')
    expect(w.imp.replayList).toEqual([])
    w.target.endRecovery()
    await w.clock.advance(5 * SEC)
    expect(w.imp.state).toBe('FULL')
  })
})

describe('failout (connect reply replayable: false)', () => {
  it('fails in-flight requests with EIO on connection loss, refuses new ones while invalid, keeps nothing, and is FULL again once the target answers', async () => {
    const w = world()
    w.target.replayable = false
    await w.full()
    expect(w.imp.replayable).toBe(false)
    const answered = w.write()
    await w.settle()
    expect(answered.reply?.transno).toBe(1)
    expect(w.imp.replayList).toEqual([])
    expect(w.imp.keptBytes).toBe(0)

    w.target.holdReplies = () => true
    const inflight = [w.write(), w.req()]
    await w.settle()
    w.target.holdReplies = null
    w.net.node(A).down()
    await w.settle()
    expect(inflight.map((r) => r.error?.code)).toEqual(['EIO', 'EIO'])
    expect(w.imp.invalid).toBe(true)
    expect(w.imp.generation).toBe(1)
    expect(w.invalidations).toHaveLength(1)
    expect(w.cap.messages().some((m) => m.includes('was lost; in progress operations using this service will fail'))).toBe(true)
    const refused = [w.req(), w.write(), w.req('statfs', {}, { noDelay: true })]
    await w.clock.advance(20 * SEC)
    expect(refused.map((r) => r.error?.code)).toEqual(['ESHUTDOWN', 'ESHUTDOWN', 'ESHUTDOWN'])

    w.net.node(A).up()
    await w.clock.advance(5 * SEC)
    expect(w.imp.state).toBe('FULL')
    expect(w.imp.invalid).toBe(false)
    const again = w.write()
    await w.settle()
    expect(again.reply?.transno).toBe(3)
    expect(sentFor(w, inflight[0]!.xid)).toHaveLength(1)
  })
})

describe('close', () => {
  it('an import closed during recovery stays CLOSED when the recovery ends', async () => {
    const w = world()
    await w.full()
    w.write()
    await w.settle()
    w.target.restart({ recover: true })
    const r = w.req()
    await w.settle()
    expect(w.imp.state).toBe('REPLAY_WAIT')
    await w.imp.close()
    expect(w.imp.state).toBe('CLOSED')
    expect(r.error?.code).toBe('EIO')
    w.target.endRecovery()
    await w.clock.advance(100 * SEC)
    expect(w.imp.state).toBe('CLOSED')
    expect(w.states.at(-1)).toBe('CLOSED')
    expect(w.net.sent.filter((s) => s.at > 0)).toEqual([])
  })

  it('an import closed while its connection fails stays CLOSED and stops reconnecting', async () => {
    const w = world()
    await w.full()
    w.target.restart({ recover: true })
    w.target.holdReplies = (h) => h.flags.includes('replay_done')
    w.req()
    await w.settle()
    expect(w.imp.state).toBe('REPLAY_WAIT')
    await w.imp.close()
    w.net.node(A).down()
    await w.clock.advance(100 * SEC)
    expect(w.imp.state).toBe('CLOSED')
    expect(w.net.ops('connect')).toHaveLength(2)
  })

  it('a request answered ENOTCONN while the disconnect is out (the target dropped us first) does not reconnect: the target keeps no export', async () => {
    const w = world()
    await w.full()
    w.target.holdReplies = (h) => h.op === 'disconnect'
    const closed = w.imp.close()
    await w.settle()
    expect(w.target.exports.has(UUID)).toBe(false)
    const r = w.req()
    await w.settle()
    expect(w.net.ops('ost_getattr')).toHaveLength(1)
    w.target.releaseReplies()
    await closed
    expect(w.states).toEqual(['CONNECTING', 'FULL', 'CLOSED'])
    expect(w.net.ops('connect')).toHaveLength(1)
    expect(r.error?.code).toBe('EIO')
    expect([w.target.exports.has(UUID), w.target.clients.has(UUID)]).toEqual([false, false])
  })

  it('a connect on the wire when close() runs is waited for, and the export it made is disconnected', async () => {
    const w = world()
    w.net.node(A).up(w.target)
    w.target.holdReplies = (h) => h.op === 'connect'
    w.imp.connect()
    await w.settle()
    expect(w.imp.state).toBe('CONNECTING')
    let done = false
    const closed = w.imp.close().then(() => (done = true))
    await w.settle()
    expect(done).toBe(false)
    w.target.releaseReplies()
    await closed
    expect(w.imp.state).toBe('CLOSED')
    expect(w.states).toEqual(['CONNECTING', 'CLOSED'])
    expect(w.net.ops('disconnect').map((s) => s.outcome)).toEqual(['reply 0'])
    expect([w.target.exports.has(UUID), w.target.clients.has(UUID)]).toEqual([false, false])
    await w.clock.advance(100 * SEC)
    expect(w.net.ops('connect')).toHaveLength(1)
  })
})

describe('deactivate / activate', () => {
  it('wakes in-flight and delayed requests with EIO at once while the target is hung, and makes no reconnect attempt until activated', async () => {
    const w = world()
    await w.full()
    w.net.node(A).hang()
    const inflight = w.write()
    await w.clock.advance(OBD + 5 * SEC)
    expect(w.imp.state).toBe('CONNECTING')
    const delayed = w.req()
    await w.settle()
    expect(w.imp.delayedCount).toBe(2)

    w.imp.deactivate()
    await w.settle()
    expect([inflight.error?.code, delayed.error?.code]).toEqual(['EIO', 'EIO'])
    expect(w.imp.deactive && w.imp.invalid).toBe(true)
    expect(w.invalidations).toEqual(['deactivated'])
    const n = w.net.ops('connect').length
    await w.clock.advance(600 * SEC)
    expect(w.net.ops('connect')).toHaveLength(n)
    const refused = w.req()
    await w.settle()
    expect(refused.error?.code).toBe('ESHUTDOWN')

    w.net.node(A).up()
    w.imp.activate()
    await w.settle()
    expect(w.net.ops('connect').length).toBeGreaterThan(n)
    expect(w.net.ops('connect')[n]!.at).toBe(w.clock.now())
    await w.clock.advance(5 * SEC)
    expect(w.imp.state).toBe('FULL')
    expect(w.imp.deactive || w.imp.invalid).toBe(false)
    const r = w.write()
    await w.settle()
    expect(r.reply).toBeDefined()
  })

  it('deactivating a FULL import fails what is in flight at once; activate reconnects', async () => {
    const w = world()
    await w.full()
    w.net.node(A).hang()
    const inflight = w.write()
    await w.settle()
    w.imp.deactivate()
    await w.settle()
    expect(inflight.error?.code).toBe('EIO')
    await w.clock.advance(3 * OBD)
    expect(w.net.ops('connect')).toHaveLength(1)
    w.net.node(A).up()
    w.imp.activate()
    await w.settle()
    expect(w.net.ops('connect')).toHaveLength(2)
    expect(w.imp.state).toBe('FULL')
    expect(w.imp.invalid).toBe(false)
  })
})

describe('pinger', () => {
  it('an idle FULL import pings every obd_timeout/4, counted from its last request', async () => {
    const w = world()
    await w.full()
    await w.clock.advance(100 * SEC)
    expect(w.net.ops('ping').map((s) => s.at / SEC)).toEqual([25, 50, 75, 100])
    await w.clock.advance(10 * SEC)
    w.req()
    await w.clock.advance(40 * SEC)
    expect(w.net.ops('ping').map((s) => s.at / SEC)).toEqual([25, 50, 75, 100, 135])
    expect(w.net.ops('ping').every((s) => s.h.flags.length === 0)).toBe(true)
  })

  it('pings within 7 s while requests are kept for replay, every 25 s again once they are committed', async () => {
    const w = world()
    await w.full()
    await w.clock.advance(2 * SEC)
    w.write()
    await w.clock.advance(20 * SEC)
    expect(w.net.ops('ping').map((s) => s.at / SEC)).toEqual([9, 16])
    w.target.commit()
    await w.clock.advance(60 * SEC)
    expect(w.imp.keptBytes).toBe(0)
    expect(w.net.ops('ping').map((s) => s.at / SEC)).toEqual([9, 16, 23, 48, 73])
  })

  it('scales with obd_timeout: min(7 s, obd_timeout/4) while requests are kept', async () => {
    const w = world({ timeout: 20 })
    await w.full()
    await w.clock.advance(10 * SEC)
    expect(w.net.ops('ping').map((s) => s.at / SEC)).toEqual([5, 10])
    w.write()
    await w.clock.advance(10 * SEC)
    expect(w.net.ops('ping').map((s) => s.at / SEC)).toEqual([5, 10, 15, 20])
  })

  it('does not ping while not FULL', async () => {
    const w = world()
    await w.full()
    w.net.node(A).down()
    w.req()
    await w.clock.advance(100 * SEC)
    expect(w.net.ops('ping')).toHaveLength(0)
  })
})

describe('last_xid', () => {
  it('is the lowest xid still without a reply, minus one', async () => {
    const w = world()
    await w.full()
    w.target.holdReplies = (h) => h.op === 'ost_punch'
    const first = w.req('ost_punch', { fid: 1, stripe: 0, size: 0 })
    const second = w.req()
    await w.settle()
    const third = w.req()
    await w.settle()
    expect(second.reply && third.reply).toBeTruthy()
    expect([first, second, third].map((r) => sentFor(w, r.xid)[0]!.h.lastXid)).toEqual([first.xid - 1, first.xid - 1, first.xid - 1])
    w.target.releaseReplies()
    await w.settle()
    const fourth = w.req()
    await w.settle()
    expect(sentFor(w, fourth.xid)[0]!.h.lastXid).toBe(fourth.xid - 1)

    // Waiting requests count too: one to resend, one delayed; both carry the resend's xid - 1.
    w.net.node(A).down()
    const resent = w.req()
    await w.settle()
    const delayed = w.req()
    w.net.node(A).up()
    await w.clock.advance(5 * SEC)
    expect(w.imp.state).toBe('FULL')
    expect(sentFor(w, resent.xid).map((s) => [s.h.flags, s.h.lastXid])).toEqual([
      [[], resent.xid - 1],
      [['resend'], resent.xid - 1],
    ])
    expect(sentFor(w, delayed.xid).map((s) => s.h.lastXid)).toEqual([resent.xid - 1])
  })
})

/**
 * A network that also records each RPC's route, and whose reset(nid, owner) fails that owner's
 * requests still on the wire to nid, as destroying its pool does.
 */
class LaneNet extends FakeNet {
  readonly routes = new Map<Sent, Route | undefined>()
  readonly ownerResets: Array<[string, string | undefined]> = []
  private readonly wire = new Set<{ nid: string; owner?: string; ac: AbortController }>()

  override send(nid: string, h: ReqHeader, body: ReqBody, bulk: Uint8Array | undefined, signal: AbortSignal, route?: Route): Promise<RawReply> {
    const ac = new AbortController()
    if (signal.aborted) ac.abort(signal.reason)
    else signal.addEventListener('abort', () => ac.abort(signal.reason), { once: true })
    const p = super.send(nid, h, body, bulk, ac.signal)
    this.routes.set(this.sent[this.sent.length - 1]!, route)
    const e = { nid, owner: route?.owner, ac }
    this.wire.add(e)
    const off = () => void this.wire.delete(e)
    p.then(off, off)
    return p
  }

  override reset(nid: string, owner?: string): void {
    super.reset(nid)
    this.ownerResets.push([nid, owner])
    for (const e of [...this.wire]) if (e.nid === nid && (owner === undefined || e.owner === owner)) e.ac.abort(new Error('pool destroyed'))
  }

  lane(s: Sent): string | undefined {
    return this.routes.get(s)?.lane
  }
}

describe('imperative recovery (issue 15)', () => {
  it('a FULL import on an older instance goes to DISCONN at once and reconnects to the announced NID; what was in flight is resent, not failed', async () => {
    const w = world()
    await w.full()
    // The old node went silent: without the notice only the 100 s deadline would tell.
    w.net.node(A).hang()
    const inflight = w.write()
    await w.settle()
    w.target.restart({ recover: true })
    w.net.node(B).up(w.target)
    await w.clock.advance(1 * SEC)
    expect(w.imp.recoverTo(B, w.target.instance)).toBe(true)
    expect(w.states.slice(0, 3)).toEqual(['CONNECTING', 'FULL', 'DISCONN'])
    expect(inflight.settled).toBe(false)
    await w.settle()
    expect(w.connects().slice(1)).toEqual([[B, 1 * SEC]])
    expect(w.imp.state).toBe('REPLAY_WAIT')
    w.target.endRecovery()
    await w.settle()
    expect(w.imp.state).toBe('FULL')
    expect(w.imp.instance).toBe(2)
    expect(inflight.reply).toBeDefined()
    expect(sentFor(w, inflight.xid).map((s) => [s.nid, s.h.flags])).toEqual([
      [A, []],
      [B, ['resend']],
    ])
    expect(w.invalidations).toEqual([])
    expect(w.net.resets).toContain(A)
  })

  it('ignores a notice of the instance it is connected to or an older one, and any notice while deactivated', async () => {
    const w = world()
    await w.full()
    expect(w.imp.recoverTo(B, 1)).toBe(false)
    expect(w.imp.recoverTo(B, 0)).toBe(false)
    expect(w.imp.state).toBe('FULL')
    expect(w.imp.conns.map((c) => c.nid)).toEqual([A, B])
    w.imp.deactivate()
    expect(w.imp.recoverTo(B, 5)).toBe(false)
    await w.clock.advance(60 * SEC)
    expect(w.connects()).toHaveLength(1)
  })

  it('a failout import reconnects too, and learns from the restarted target that its requests are lost', async () => {
    const w = world()
    w.target.replayable = false
    await w.full()
    w.target.holdReplies = (h) => h.op === 'ost_getattr'
    const inflight = w.req()
    await w.settle()
    w.target.restart({ recover: false })
    w.imp.recoverTo(A, w.target.instance)
    expect(inflight.settled).toBe(false)
    await w.settle()
    // A new handle from a target not in recovery: evicted, and what waited fails with EIO.
    expect(inflight.error?.code).toBe('EIO')
    expect(w.invalidations).toEqual(['evicted'])
    expect(w.imp.state).toBe('FULL')
  })
})

describe('connections of their own (issue 15)', () => {
  it('connects, pings and recovery RPCs without bulk go on the control lane, requests and bulk replays on the io lane, all on the import\'s own connections', async () => {
    const w = world({ net: (c) => new LaneNet(c) })
    const net = w.net as LaneNet
    await w.full()
    w.write()
    w.req()
    await w.settle()
    await w.clock.advance(7 * SEC)
    expect(w.net.ops('ping')).toHaveLength(1)
    w.target.restart({ recover: true })
    w.imp.recoverTo(A, w.target.instance)
    await w.settle()
    w.target.endRecovery()
    await w.settle()
    expect(w.imp.state).toBe('FULL')
    const lanes = net.sent.map((s) => `${s.h.op}${s.h.flags.length ? `/${s.h.flags.join(',')}` : ''} ${net.lane(s)}`)
    expect(lanes).toEqual(['connect ctl', 'ost_write io', 'ost_getattr io', 'ping ctl', 'connect ctl', 'ost_write/replay io', 'ping/replay_done ctl'])
    expect(new Set([...net.routes.values()].map((r) => r?.owner))).toEqual(new Set([w.imp.name]))
  })

  it("a failure resets only the failing request's import: a failout import's request to the same node is untouched", async () => {
    const t1 = new FakeTarget('spfs-OST0001')
    const t2 = new FakeTarget('spfs-OST0002')
    t2.replayable = false
    // After a failover one node serves both targets.
    const both = { handle: (h: ReqHeader, b: ReqBody, bulk: Buffer | undefined) => (h.target === t2.name ? t2 : t1).handle(h, b, bulk) } as unknown as FakeTarget
    const y = world({ net: (c) => new LaneNet(c), target: t1 })
    const x = world({ target: t2, clock: y.clock, net: () => y.net, client: y.client })
    const net = y.net as LaneNet
    net.node(A).up(both)
    y.imp.connect()
    x.imp.connect()
    await y.settle()
    expect([y.imp.state, x.imp.state]).toEqual(['FULL', 'FULL'])

    t2.holdReplies = (h) => h.op === 'ost_getattr'
    const xr = x.req()
    await y.settle()
    net.node(A).refuse = (h) => (h.target === t1.name && h.op === 'ost_getattr' && !h.flags.includes('resend') ? new TransportError('conn', 'ECONNRESET: reset') : undefined)
    const yr = y.req()
    await y.settle()
    expect(yr.reply).toBeDefined()
    expect(net.ownerResets).toEqual([[A, y.imp.name]])
    expect(xr.settled).toBe(false)
    t2.releaseReplies()
    await y.settle()
    expect(xr.reply).toBeDefined()
    expect(x.invalidations).toEqual([])
    expect(x.states).toEqual(['CONNECTING', 'FULL'])
  })
})

describe('what was reported lost is never replayed (issue 15)', () => {
  it('deactivate during REPLAY abandons the replay on the wire and replays nothing after it', async () => {
    const w = world()
    await w.full()
    ;[w.write(100, 1), w.write(200, 2), w.write(300, 3)]
    await w.settle()
    expect(w.imp.replayList.map((r) => r.transno)).toEqual([1, 2, 3])
    w.target.restart({ recover: true })
    w.target.holdReplies = (h) => h.flags.includes('replay') && h.transno === 1
    w.imp.recoverTo(A, w.target.instance)
    await w.settle()
    expect(w.imp.state).toBe('REPLAY')
    const n = w.connects().length
    w.imp.deactivate()
    await w.settle()
    expect(w.imp.replayList).toEqual([])
    expect(w.imp.keptBytes).toBe(0)
    w.target.releaseReplies()
    await w.clock.advance(600 * SEC)
    const replayed = w.net.sent.filter((s) => s.h.flags.includes('replay')).map((s) => s.h.transno)
    expect(replayed).toEqual([1])
    expect(w.net.sent.filter((s) => s.h.flags.includes('replay_done'))).toEqual([])
    expect(w.invalidations).toEqual(['deactivated'])
    expect(w.imp.state).toBe('DISCONN')
    expect(w.connects()).toHaveLength(n)
  })
})

describe('whenCommitted (issue 15)', () => {
  it('resolves once last_committed reaches the transno, bringing the next ping forward to learn it (also in failout)', async () => {
    const w = world()
    w.target.replayable = false
    await w.full()
    const r = w.write()
    await w.settle()
    const transno = r.reply!.transno
    expect(transno).toBe(1)
    await expect(w.imp.whenCommitted(0)).resolves.toBeUndefined()
    let done = false
    void w.imp.whenCommitted(transno).then(() => (done = true))
    w.target.commit()
    await w.clock.advance(7 * SEC - 1)
    expect(done).toBe(false)
    await w.clock.advance(1)
    expect(done).toBe(true)
    expect(w.net.ops('ping').map((s) => s.at)).toEqual([7 * SEC])
    // Nobody waits any more: the idle interval again.
    await w.clock.advance(25 * SEC - 1)
    expect(w.net.ops('ping')).toHaveLength(1)
  })

  it('rejects with EIO when the import is invalidated or closed first, and at once on an invalid or closed import', async () => {
    const w = world()
    w.target.replayable = false
    await w.full()
    w.write()
    await w.settle()
    const lost = w.imp.whenCommitted(1)
    w.imp.deactivate()
    await expect(lost).rejects.toMatchObject({ code: 'EIO' })
    await expect(w.imp.whenCommitted(1)).rejects.toMatchObject({ code: 'EIO' })
    w.imp.activate()
    await w.settle()
    expect(w.imp.state).toBe('FULL')
    const closed = w.imp.whenCommitted(2)
    await w.imp.close()
    await expect(closed).rejects.toMatchObject({ code: 'EIO' })
    await expect(w.imp.whenCommitted(2)).rejects.toMatchObject({ code: 'EIO' })
  })
})

describe('xids (issue 15)', () => {
  it('start from the wall clock in microseconds and strictly increase; a client started later starts above', async () => {
    const clock = new ManualClock(1_700_000_000_000)
    const log = captureLogger().log
    const a = new PtlrpcClient(clock, log, 988, { transport: new FakeNet(clock) })
    const first = a.nextXid()
    expect(first).toBe(1_700_000_000_000_000 + 1)
    for (let i = 0; i < 500; i++) a.nextXid()
    expect(a.lastXid).toBe(first + 500)
    await clock.advance(1)
    const b = new PtlrpcClient(clock, log, 988, { transport: new FakeNet(clock) })
    expect(b.nextXid()).toBeGreaterThan(a.lastXid)
  })
})

describe('connection list from the MGS configuration (tunefs)', () => {
  it('new NIDs join, dropped ones leave but the one in use; a failure then reconnects only among the new ones', async () => {
    const w = world({ nids: [A, B] })
    await w.full()
    w.imp.setConnections([C])
    expect(w.imp.conns.map((c) => c.nid)).toEqual([A, C])
    expect(w.cap.lines.some((l) => /connection list now oss1@tcp, oss3@tcp/.test(l.msg))).toBe(true)
    w.imp.setConnections([C])
    expect(w.imp.conns.map((c) => c.nid)).toEqual([A, C])

    // A dies, the target comes up on C: the write is resent there, B is never tried.
    w.net.node(B).up(w.target)
    w.net.node(C).up(w.target)
    const r = w.write()
    w.net.node(A).down()
    await w.clock.advance(10 * SEC)
    expect(w.imp.state).toBe('FULL')
    expect(w.imp.currentNid).toBe(C)
    expect(w.net.ops('connect', B)).toEqual([])
    expect(r.reply?.transno).toBe(1)
    // No longer in use, A leaves at the next change.
    w.imp.setConnections([C, B])
    expect(w.imp.conns.map((c) => c.nid)).toEqual([C, B])
  })

  it('a NID dropped while a connect to it is out: the connect succeeds and the list keeps its order', async () => {
    const w = world({ nids: [A, B, C] })
    w.net.node(A).up(w.target)
    w.target.holdReplies = (h) => h.op === 'connect'
    w.imp.connect()
    await w.settle()
    w.imp.setConnections([B, C])
    expect(w.imp.conns.map((c) => c.nid)).toEqual([B, C])
    w.target.releaseReplies()
    await w.settle()
    expect(w.imp.state).toBe('FULL')
    expect(w.imp.currentNid).toBe(A)
    expect(w.imp.conns.map((c) => c.nid)).toEqual([B, C])
  })
})
