import { describe, it, expect, afterAll, afterEach, vi } from 'vitest'
import { ManualClock } from '../../src/common/clock.js'
import { Recovery, type RecoveryOptions } from '../../src/server/target/recovery.js'
import { Journal } from '../../src/server/target/journal.js'
import type { Target, TargetReply } from '../../src/server/target/target.js'
import { captureLogger } from '../helpers/log.js'
import { tempDir, removeTempDirs } from '../helpers/nodes.js'
import { openTarget, TestClient } from '../helpers/target.js'

afterAll(removeTempDirs)

const SOFT = 30_000
const HARD = 90_000

/** A Recovery as the target builds it; `evict` does what Target.evict does to it (dropped). */
function setup(known: string[], lastCommitted = 10, over: Partial<RecoveryOptions> = {}) {
  const clock = new ManualClock()
  const cap = captureLogger('info')
  const evicted: string[] = []
  const ran: number[] = []
  const cancelled: number[] = []
  const r: Recovery = new Recovery({
    clock,
    log: cap.log,
    target: 'spfs-OST0001',
    known,
    lastCommitted,
    softMs: SOFT,
    hardMs: HARD,
    imperative: false,
    evict: (uuid) => {
      evicted.push(uuid)
      r.dropped(uuid)
    },
    ...over,
  })
  const replay = (uuid: string, transno: number) =>
    r.replay(
      uuid,
      transno,
      () => ran.push(transno),
      () => cancelled.push(transno),
    )
  const recoveryOver = () => cap.messages().filter((m) => m.includes('Recovery over'))
  return { r, clock, evicted, ran, cancelled, replay, log: cap, recoveryOver }
}

describe('recovery window', () => {
  it('is inactive without known clients', () => {
    const { r } = setup([])
    expect(r.active).toBe(false)
    expect(r.status).toBe('INACTIVE')
  })

  it('starts at the first reconnect, not at the target start', async () => {
    const { r, clock, evicted, recoveryOver } = setup(['A', 'B'])
    expect(r.status).toBe('WAITING_FOR_CLIENTS')
    await clock.advance(SOFT - 1000)
    expect(r.active).toBe(true)
    r.connect('A')
    expect(r.status).toBe('RECOVERING')
    // Had the window started with the target, it would be over by now.
    await clock.advance(SOFT - 1)
    expect(r.active).toBe(true)
    expect(r.view(0).time_remaining).toBe(0)
    await clock.advance(1)
    // B never came back: evicted. A did, and may go on until the hard limit.
    expect(evicted).toEqual(['B'])
    expect(r.status).toBe('RECOVERING')
    expect(r.view(0).time_remaining).toBe((HARD - SOFT) / 1000)
    await clock.advance(HARD - SOFT)
    expect(r.status).toBe('COMPLETE')
    expect(evicted.sort()).toEqual(['A', 'B'])
    expect(recoveryOver()).toEqual(['spfs-OST0001: Recovery over after 1:30, of 2 clients 0 recovered and 2 were evicted.'])
  })

  it('ends after recovery_time_soft from the start when no known client comes back', async () => {
    const { r, clock, evicted, recoveryOver } = setup(['A', 'B'])
    await clock.advance(SOFT - 1)
    expect(r.active).toBe(true)
    await clock.advance(1)
    expect(r.active).toBe(false)
    expect(evicted.sort()).toEqual(['A', 'B'])
    expect(recoveryOver()).toHaveLength(1)
    expect(recoveryOver()[0]).toMatch(/of 2 clients 0 recovered and 2 were evicted\.$/)
  })

  it('is extended by reconnects and replays, never past the hard limit', async () => {
    const { r, clock, replay, evicted } = setup(['A', 'B', 'C'])
    r.connect('A') // t=0: deadline 30 s
    await clock.advance(20_000)
    r.connect('B') // t=20: deadline 50 s
    expect(r.view(0).time_remaining).toBe(30)
    await clock.advance(25_000)
    replay('A', 11) // t=45: deadline 75 s
    expect(r.view(0).time_remaining).toBe(30)
    await clock.advance(25_000)
    expect(r.active).toBe(true)
    r.connect('A') // t=70: deadline would be 100 s, the hard limit is 90 s
    expect(r.view(0).time_remaining).toBe(20)
    await clock.advance(19_999)
    expect(r.active).toBe(true)
    await clock.advance(1)
    expect(r.active).toBe(false)
    expect(r.view(0).recovery_duration).toBe(90)
    expect(evicted.sort()).toEqual(['A', 'B', 'C'])
  })

  it('replays strictly in transno order across clients, waiting for clients not yet back', async () => {
    const { r, ran, replay } = setup(['A', 'B'], 10)
    // A holds 11, 13, 14; B holds 12, 15. A is back first.
    r.connect('A')
    replay('A', 11)
    expect(ran).toEqual([11])
    replay('A', 13)
    // 12 may be B's, and B has not reconnected yet: 13 must wait.
    expect(ran).toEqual([11])
    r.connect('B')
    expect(ran).toEqual([11])
    replay('B', 12)
    expect(ran).toEqual([11, 12, 13])
    replay('B', 15)
    expect(ran).toEqual([11, 12, 13])
    replay('A', 14)
    expect(ran).toEqual([11, 12, 13, 14, 15])
    expect(r.view(15).replayed_requests).toBe(5)
    expect(r.view(15).next_transno).toBe(16)
    void r.replayDone('A')
    expect(r.active).toBe(true)
    void r.replayDone('B')
    expect(r.status).toBe('COMPLETE')
  })

  it('gap rule: skips to the lowest queued transno once every client still replaying has one queued', async () => {
    const { r, ran, replay, log } = setup(['A', 'B', 'C'], 10)
    r.connect('A')
    r.connect('B')
    r.connect('C')
    void r.replayDone('C') // C had nothing to replay
    replay('A', 11)
    replay('A', 14) // 12 was lost with the server's memory (no client holds it)
    expect(ran).toEqual([11])
    replay('B', 13)
    expect(ran).toEqual([11, 13, 14])
    expect(log.lines.some((l) => l.msg === 'recovery: skipping transno gap' && l.from === 12 && l.to === 13)).toBe(true)
    // A is done; B alone decides the next gap.
    void r.replayDone('A')
    replay('B', 20)
    expect(ran).toEqual([11, 13, 14, 20])
  })

  it('a client that is done no longer holds back the others', async () => {
    const { r, ran, replay } = setup(['A', 'B'], 10)
    r.connect('A')
    r.connect('B')
    replay('A', 12)
    expect(ran).toEqual([])
    void r.replayDone('B')
    expect(ran).toEqual([12])
  })

  it('at the end of the soft window evicts only the clients that never reconnected: a connected one replays on past the gap', async () => {
    // C comes first in the table and never reconnects; B waits on a gap behind it (12 was C's).
    const { r, clock, ran, cancelled, replay, evicted, recoveryOver, log } = setup(['A', 'C', 'B'], 10)
    r.connect('A')
    r.connect('B')
    replay('A', 11)
    const aDone = r.replayDone('A')
    replay('B', 13)
    expect(ran).toEqual([11])
    let over = false
    void aDone.then(() => (over = true))
    await clock.advance(SOFT)
    expect(evicted).toEqual(['C'])
    expect(log.messages()).toContain('spfs-OST0001: recovery window expired, evicting 1 client(s) that never reconnected; 1 still replaying until the hard limit')
    // B's replay ran past the gap C left (the backend checks its versions), B is still recovering.
    expect(ran).toEqual([11, 13])
    expect(cancelled).toEqual([])
    expect(r.status).toBe('RECOVERING')
    replay('B', 14)
    expect(ran).toEqual([11, 13, 14])
    void r.replayDone('B')
    await clock.advance(0)
    expect(over).toBe(true)
    expect(r.status).toBe('COMPLETE')
    expect(recoveryOver()).toEqual(['spfs-OST0001: Recovery over after 0:30, of 3 clients 2 recovered and 1 were evicted.'])
    expect(r.view(14)).toMatchObject({ status: 'COMPLETE', completed_clients: '2/3', evicted_clients: 1, replayed_requests: 3, VBR: 'ENABLED' })
  })

  it('at the hard limit evicts whoever is not done, cancelling their queued replays', async () => {
    const { r, clock, ran, cancelled, replay, evicted, recoveryOver } = setup(['A', 'B'], 10)
    r.connect('A')
    r.connect('B')
    replay('B', 12) // waits for A's 11, which A never sends: A is connected but stuck
    await clock.advance(SOFT)
    expect(evicted).toEqual([])
    expect(ran).toEqual([])
    await clock.advance(HARD - SOFT - 1)
    expect(r.active).toBe(true)
    await clock.advance(1)
    expect(evicted.sort()).toEqual(['A', 'B'])
    expect(cancelled).toEqual([12])
    expect(ran).toEqual([])
    expect(recoveryOver()).toEqual(['spfs-OST0001: Recovery over after 1:30, of 2 clients 0 recovered and 2 were evicted.'])
  })

  it('counts the replays that ran on their versions past a gap, and those refused on a version mismatch', () => {
    const { r, replay } = setup(['A', 'B', 'C'], 10)
    r.connect('A')
    r.connect('B')
    r.connect('C')
    void r.replayDone('C')
    replay('A', 11)
    r.outcome(true)
    replay('A', 13) // skipped 12 once B queues
    replay('B', 14)
    r.outcome(true) // 13, past the gap
    r.outcome(false, true) // 14 was refused
    expect(r.view(14)).toMatchObject({ replayed_requests: 3, vbr_replayed: 1, vbr_failed: 1 })
  })

  it('ends as soon as every known client is done', async () => {
    const { r, replay, evicted, recoveryOver, clock } = setup(['A', 'B'], 10)
    r.connect('A')
    await clock.advance(20_000)
    r.connect('B')
    replay('B', 11)
    void r.replayDone('B')
    expect(r.active).toBe(true)
    await clock.advance(5_000)
    void r.replayDone('A')
    expect(r.status).toBe('COMPLETE')
    expect(evicted).toEqual([])
    expect(recoveryOver()).toEqual(['spfs-OST0001: Recovery over after 0:25, of 2 clients 2 recovered and 0 were evicted.'])
  })

  it('abort ends it at once, evicting whoever is not finished', async () => {
    const { r, replay, evicted, cancelled, recoveryOver } = setup(['A', 'B', 'C'], 10)
    r.connect('A')
    r.connect('B')
    void r.replayDone('A')
    replay('B', 12)
    r.abort()
    expect(r.status).toBe('COMPLETE')
    expect(evicted.sort()).toEqual(['B', 'C'])
    expect(cancelled).toEqual([12])
    expect(recoveryOver()[0]).toMatch(/of 3 clients 1 recovered and 2 were evicted\.$/)
    // Later waits resolve at once.
    await r.whenComplete()
  })

  it('a client evicted during recovery (its replay was rejected) stops holding the others', () => {
    const { r, ran, replay } = setup(['A', 'B'], 10)
    r.connect('A')
    r.connect('B')
    replay('A', 13)
    replay('B', 11)
    expect(ran).toEqual([11])
    replay('B', 12)
    expect(ran).toEqual([11, 12, 13])
    replay('B', 15)
    replay('A', 17) // both wait: skip 14
    expect(ran).toEqual([11, 12, 13, 15])
    replay('B', 19) // both wait: skip 16
    expect(ran).toEqual([11, 12, 13, 15, 17])
    // A's next one (18?) never comes: A is evicted.
    r.dropped('A')
    expect(ran).toEqual([11, 12, 13, 15, 17, 19])
  })

  it('reports its state as recovery_status does', async () => {
    const { r, clock, replay } = setup(['A', 'B'], 10, { imperative: true })
    let v = r.view(10)
    expect(v).toMatchObject({ status: 'WAITING_FOR_CLIENTS', connected_clients: '0/2', completed_clients: '0/2', next_transno: 11, IR: 'ENABLED' })
    await clock.advance(3000)
    r.connect('A')
    replay('A', 12)
    v = r.view(12)
    expect(v).toMatchObject({
      status: 'RECOVERING',
      connected_clients: '1/2',
      req_replay_clients: 1,
      queued_requests: 1,
      next_transno: 11,
      last_transno: 12,
      time_remaining: 30,
      recovery_start: Math.floor(clock.wallNow() / 1000),
    })
    expect(v.clients).toEqual([
      { uuid: 'A', state: 'replaying' },
      { uuid: 'B', state: 'waiting' },
    ])
  })

  it('close releases waiters and fails queued replays', async () => {
    const { r, replay, cancelled } = setup(['A', 'B'], 10)
    r.connect('A')
    replay('A', 12)
    const done = r.whenComplete()
    r.close()
    await done
    expect(cancelled).toEqual([12])
  })

  it('a replay queued again (its client reconnected and replays anew) cancels the copy queued before; replay_done cancels what is left', () => {
    const { r } = setup(['A', 'B'], 10)
    const settled: string[] = []
    const replay = (uuid: string, transno: number, copy: string) =>
      r.replay(
        uuid,
        transno,
        () => settled.push(`${copy} ran`),
        () => settled.push(`${copy} cancelled`),
      )
    r.connect('A')
    r.connect('B')
    // 11 is B's: A's 12 waits.
    replay('A', 12, 'first')
    replay('A', 12, 'again')
    expect(settled).toEqual(['first cancelled'])
    expect(r.view(0).queued_requests).toBe(1)
    replay('B', 11, 'B')
    expect(settled).toEqual(['first cancelled', 'B ran', 'again ran'])
    // 13 may be B's: A's 14 waits, and A says it is done without waiting for its reply.
    replay('A', 14, 'third')
    void r.replayDone('A')
    expect(settled).toEqual(['first cancelled', 'B ran', 'again ran', 'third cancelled'])
    expect(r.view(0).queued_requests).toBe(0)
    r.close()
    expect(settled).toHaveLength(4)
  })
})

/** OSTs opened by the tests below, each stopped (as by a crash) after its test. */
const targets: Target[] = []
afterEach(async () => {
  for (const t of targets.splice(0)) await t.stop(false).catch(() => undefined)
})

async function open(dir: string, clock: ManualClock) {
  const r = await openTarget({ dir, kind: 'ost', clock, tunables: { recoverySoftMs: SOFT, recoveryHardMs: HARD } })
  targets.push(r.target)
  return r.target
}

/** An OST target in a fresh directory, clients A and B connected to it. */
async function twoClients() {
  const dir = await tempDir('lp-recov')
  const clock = new ManualClock()
  const target = await open(dir, clock)
  const a = new TestClient(target, 'client-A')
  const b = new TestClient(target, 'client-B')
  await a.connect()
  await b.connect()
  return { dir, clock, a, b, target }
}

describe('recovery in the target', () => {

  const wr = (c: TestClient, offset: number, data: string, o = {}) =>
    c.call('ost_write', { fid: 1, stripe: 0, offset }, { bulk: Buffer.from(data), ...o })

  it('refuses new clients with EBUSY while known ones recover, replays in transno order, and lets the waiting requests go', async () => {
    const { dir, clock, a, b, target } = await twoClients()
    let t = target
    // Interleaved overlapping writes; only transno order gives the final bytes.
    const kept: Array<{ c: TestClient; xid: number; transno: number; offset: number; data: string }> = []
    const plan: Array<[TestClient, number, string]> = [
      [a, 0, 'AAAAAAAA'],
      [b, 2, 'bbbb'],
      [a, 4, 'CCCCCC'],
      [b, 0, 'dd'],
      [a, 9, 'E'],
    ]
    for (const [c, offset, data] of plan) {
      const r = await wr(c, offset, data)
      kept.push({ c, xid: c.xid, transno: r.transno, offset, data })
    }
    const before = (await a.ok('ost_read', { fid: 1, stripe: 0, offset: 0, length: 100 })).bulk!.toString()
    expect(before).toBe('ddbbCCCCCE')
    await t.stop(false) // crash: nothing was committed but the two connects
    targets.splice(0)

    t = await open(dir, clock)
    a.target = t
    b.target = t
    expect(t.recovering).toBe(true)
    expect(t.lastCommitted).toBe(0)
    const ca = await a.connect()
    expect(ca.body.recovering).toBe(true)

    // A newcomer must wait for the end of recovery.
    const stranger = new TestClient(t, 'client-new')
    const refused = await stranger.call('connect')
    expect(refused.status).toBe(-16) // EBUSY
    expect(refused.error).toMatch(/Denying connection for new client client-new, waiting for 2 known clients \(0 recovered, 1 in progress, and 0 evicted\)/)

    // Each client replays one request at a time, in its transno order.
    const replayAll = async (c: TestClient) => {
      const out = []
      for (const k of kept.filter((x) => x.c === c)) out.push(await wr(c, k.offset, k.data, { flags: ['replay'], xid: k.xid, transno: k.transno }))
      return out
    }
    // A starts first: its transno 3 must wait for B's 2.
    const replayedA = replayAll(a)
    // A known client's ordinary request waits for the end of recovery.
    let readDone = false
    const waitingRead = a.call('ost_read', { fid: 1, stripe: 0, offset: 0, length: 100 }).then((r) => {
      readDone = true
      return r
    })
    await clock.advance(0)
    expect(t.recoveryStatus()).toMatchObject({ status: 'RECOVERING', replayed_requests: 1, queued_requests: 1, next_transno: 2 })
    await b.connect()
    const replayedB = replayAll(b)
    const [ra, rb] = await Promise.all([replayedA, replayedB])
    expect(ra.map((r) => [r.status, r.transno])).toEqual([[0, 1], [0, 3], [0, 5]])
    expect(rb.map((r) => [r.status, r.transno])).toEqual([[0, 2], [0, 4]])
    expect(readDone).toBe(false)
    const doneA = a.replayDone()
    const doneB = b.replayDone()
    expect((await doneA).status).toBe(0)
    expect((await doneB).status).toBe(0)
    expect((await waitingRead).bulk!.toString()).toBe(before)
    expect(t.recovering).toBe(false)
    expect(t.recoveryStatus()).toMatchObject({ status: 'COMPLETE', completed_clients: '2/2', evicted_clients: 0, replayed_requests: 5 })
    // Numbering goes on after the replayed transnos; newcomers are welcome now.
    expect((await wr(a, 20, 'F')).transno).toBe(6)
    expect((await stranger.call('connect')).status).toBe(0)
  })

  it("the target's own transactions wait for the end of recovery: they must not take a replay's transno", async () => {
    const dir = await tempDir('lp-recov')
    const clock = new ManualClock()
    const destroyed: number[] = []
    const destroyer = { destroy: async (fid: number) => void destroyed.push(fid) }
    const tun = { recoverySoftMs: SOFT, recoveryHardMs: HARD, commitIntervalMs: 1000 }
    let r = await openTarget({ dir, kind: 'mdt', clock, tunables: tun })
    targets.push(r.target)
    const c = new TestClient(r.target, 'client-A')
    await c.connect()
    const layout = { stripe_size: 1 << 20, osts: [1] }
    const f = await c.ok<{ attr: { fid: number } }>('mdt_create', { parent: 1, name: 'gone', type: 'reg', mode: 0o644, uid: 0, gid: 0, time: 1, layout })
    await c.ok('mdt_unlink', { parent: 1, name: 'gone', dir: false, time: 2 })
    await c.ok('sync') // the unlink is durable: its objects are in the llog
    const args = { parent: 1, name: 'kept', type: 'reg', mode: 0o644, uid: 0, gid: 0, time: 3 }
    const kept = await c.ok('mdt_create', args) // transno 3, never committed: the client keeps it
    const keptXid = c.xid
    expect(kept.transno).toBe(3)
    await r.target.stop(false)
    targets.splice(0)

    // The restarted MDT destroys the llog'd objects at once, while the client is still away.
    r = await openTarget({ dir, kind: 'mdt', clock, tunables: tun, destroyer })
    targets.push(r.target)
    c.target = r.target
    await vi.waitFor(() => expect(destroyed).toEqual([f.body.attr.fid]))
    // Commit intervals go by; whatever they write to the journal is written before we go on.
    const append = vi.spyOn(Journal.prototype, 'append')
    await clock.advance(5000)
    await Promise.all(append.mock.results.map((x) => x.value))
    append.mockRestore()
    const conn = await c.connect()
    // Transno 3 is still the client's to replay: nothing may claim it committed.
    expect(conn.body.last_committed).toBe(2)
    const replayed = await c.call('mdt_create', args, { flags: ['replay'], xid: keptXid, transno: 3, replayReply: kept.body })
    expect(replayed.status).toBe(0)
    expect((await c.replayDone()).status).toBe(0)
    expect((await c.ok('mdt_lookup', { parent: 1, name: 'kept' })).status).toBe(0)
    // After recovery the llog cancel is committed under a transno of its own.
    await c.ok('sync')
    expect(r.target.lastCommitted).toBe(4)
    expect(r.mdt!.pendingDestroys()).toBe(0)
  })

  it('a replay sent again (its reply was lost) gets the first reply and does not execute twice', async () => {
    const dir = await tempDir('lp-recov')
    const clock = new ManualClock()
    let r = await openTarget({ dir, kind: 'mdt', clock, tunables: { recoverySoftMs: SOFT, recoveryHardMs: HARD } })
    targets.push(r.target)
    const c = new TestClient(r.target, 'client-A')
    await c.connect()
    const kept: Array<{ xid: number; transno: number; args: unknown; body: unknown }> = []
    for (const name of ['one', 'two']) {
      const args = { parent: 1, name, type: 'reg', mode: 0o644, uid: 0, gid: 0, time: 1 }
      const rep = await c.ok('mdt_create', args)
      kept.push({ xid: c.xid, transno: rep.transno, args, body: rep.body })
    }
    await r.target.stop(false)
    targets.splice(0)
    r = await openTarget({ dir, kind: 'mdt', clock, tunables: { recoverySoftMs: SOFT, recoveryHardMs: HARD } })
    targets.push(r.target)
    c.target = r.target
    // As an import sends them: last_xid is past the kept requests (they all had their replies).
    const replay = (k: (typeof kept)[number]) =>
      c.call('mdt_create', k.args, { flags: ['replay'], xid: k.xid, transno: k.transno, replayReply: k.body, lastXid: c.xid })
    await c.connect()
    expect((await replay(kept[0]!)).status).toBe(0)
    // The connection drops before the reply arrives: the client reconnects and replays from the start.
    await c.connect()
    const again = await replay(kept[0]!)
    expect(again.status).toBe(0)
    expect(again.transno).toBe(kept[0]!.transno)
    expect(again.body).toEqual(kept[0]!.body)
    expect((await replay(kept[1]!)).status).toBe(0)
    expect((await c.replayDone()).status).toBe(0)
    expect(r.target.recoveryStatus()).toMatchObject({ completed_clients: '1/1', evicted_clients: 0 })
    const names = (await c.ok<{ entries: Array<{ name: string }> }>('mdt_readdir', { fid: 1, cookie: 0, count: 100 })).body.entries.map((e) => e.name)
    expect(names).toEqual(['one', 'two'])
  })

  it('a replay sent again while its first copy waits in the queue answers the first copy (ENOTCONN) and runs once', async () => {
    const { dir, clock, a, b, target } = await twoClients()
    let t = target
    const kb = { xid: 0, transno: (await wr(b, 0, 'bb')).transno }
    kb.xid = b.xid
    const ka = { xid: 0, transno: (await wr(a, 4, 'aa')).transno }
    ka.xid = a.xid
    await t.stop(false)
    targets.splice(0)

    t = await open(dir, clock)
    a.target = t
    b.target = t
    const replayA = () => wr(a, 4, 'aa', { flags: ['replay'], xid: ka.xid, transno: ka.transno })
    await a.connect()
    let first: TargetReply | undefined
    void replayA().then((r) => (first = r))
    await clock.advance(0)
    // Behind B's transno, and B is not back yet.
    expect(first).toBeUndefined()
    // Its reply late, the client reconnects and replays it again.
    await a.connect()
    const again = replayA()
    await vi.waitFor(() => expect([first?.status, first?.error]).toEqual([-107, 'evicted before this replay ran']))
    await b.connect()
    expect((await wr(b, 0, 'bb', { flags: ['replay'], xid: kb.xid, transno: kb.transno })).status).toBe(0)
    expect(await again).toMatchObject({ status: 0, transno: ka.transno })
    expect((await Promise.all([a.replayDone(), b.replayDone()])).map((r) => r.status)).toEqual([0, 0])
    expect(t.recoveryStatus()).toMatchObject({ status: 'COMPLETE', evicted_clients: 0, replayed_requests: 2 })
  })

  it('evicts at expiry a client that never came back; its later requests get ENOTCONN', async () => {
    const dir = await tempDir('lp-recov')
    const clock = new ManualClock()
    const cap = captureLogger('info')
    let t = await open(dir, clock)
    const a = new TestClient(t, 'client-A')
    const b = new TestClient(t, 'client-B')
    await a.connect()
    await b.connect()
    await t.stop(false)
    targets.splice(0)
    const r = await openTarget({ dir, kind: 'ost', clock, log: cap.log, tunables: { recoverySoftMs: SOFT, recoveryHardMs: HARD } })
    t = r.target
    targets.push(t)
    a.target = t
    b.target = t
    await a.connect()
    const done = a.replayDone()
    await clock.advance(SOFT)
    expect((await done).status).toBe(0)
    expect(cap.messages()).toContain('spfs-OST0001: Recovery over after 0:30, of 2 clients 1 recovered and 1 were evicted.')
    const late = await b.call('ping')
    expect(late.status).toBe(-107)
    expect(t.clients().map((c) => c.uuid)).toEqual(['client-A'])
  })
})

describe('identity on a keyed filesystem', () => {
  it('a connect with a UUID in use and no handle is refused (EALREADY) and the holder stays; without a key, or with the node key, it takes over', async () => {
    const clock = new ManualClock()
    const t = await open(await tempDir('lp-ident'), clock)
    const holder = new TestClient(t, 'client-A', 'fs')
    await holder.connect()
    const borrower = new TestClient(t, 'client-A', 'fs')
    const r = await borrower.call('connect')
    expect([r.status, r.error]).toEqual([-114, `${t.name}: client client-A is already connected; a reconnect names its export handle`])
    expect((await holder.call('ping')).status).toBe(0)
    // The holder itself, naming its handle, reconnects.
    await holder.connect()
    expect((await holder.call('ping')).status).toBe(0)

    const server = new TestClient(t, 'client-A', 'node')
    expect((await server.call('connect')).status).toBe(0)
    expect((await holder.call('ping')).status).toBe(-107)
    const unkeyed = new TestClient(t, 'client-A', null)
    expect((await unkeyed.call('connect')).status).toBe(0)
  })

  it("an MDT's OSP UUID connects with the node key alone: with another key it is refused (EPERM) and the OSP in place stays", async () => {
    const clock = new ManualClock()
    const t = await open(await tempDir('lp-ident'), clock)
    const osp = new TestClient(t, 'spfs-MDT0000-mdtlov-6aa0e1d2_UUID', 'node')
    await osp.connect()
    const squatter = new TestClient(t, 'spfs-MDT0000-mdtlov-0_UUID', 'fs')
    const r = await squatter.call('connect')
    expect([r.status, r.error]).toEqual([-1, `${t.name}: spfs-MDT0000-mdtlov-0_UUID names an MDT's OSP: its connect must be signed with the filesystem's node key, not the fs key`])
    expect(t.clients().map((c) => c.uuid)).toEqual(['spfs-MDT0000-mdtlov-6aa0e1d2_UUID'])
    expect((await osp.call('ping')).status).toBe(0)
    // The MDT restarted: its new OSP, with the node key, replaces the old one.
    const next = new TestClient(t, 'spfs-MDT0000-mdtlov-77_UUID', 'node')
    await next.connect()
    expect(t.clients().map((c) => c.uuid)).toEqual(['spfs-MDT0000-mdtlov-77_UUID'])
  })

  it('a connect for recovery must name the export handle', async () => {
    const dir = await tempDir('lp-ident')
    const clock = new ManualClock()
    let t = await open(dir, clock)
    const a = new TestClient(t, 'client-A', 'fs')
    await a.connect()
    await t.stop(false)
    targets.splice(0)
    t = await open(dir, clock)
    expect(t.recovering).toBe(true)
    const borrower = new TestClient(t, 'client-A', 'fs')
    const r = await borrower.call('connect')
    expect([r.status, r.error]).toEqual([-114, `${t.name}: client-A reconnecting for recovery without its export handle; refused`])
    a.target = t
    expect((await a.connect()).body.recovering).toBe(true)
  })
})
