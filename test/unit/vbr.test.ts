import { describe, it, expect, afterAll, afterEach, vi } from 'vitest'
import path from 'node:path'
import { ManualClock } from '../../src/common/clock.js'
import { silentLogger } from '../../src/common/log.js'
import { Target, type TargetReply } from '../../src/server/target/target.js'
import { Journal } from '../../src/server/target/journal.js'
import { MdtBackend } from '../../src/server/mdt/mdt.js'
import type { MdtAttr } from '../../src/protocol/ops.js'
import { captureLogger } from '../helpers/log.js'
import { tempDir, removeTempDirs } from '../helpers/nodes.js'
import { MDT_NAME, openTarget, testTunables, TestClient } from '../helpers/target.js'

/**
 * Version-based recovery (Lustre 1.8's replay-vbr.sh), a FID given once, and exactly-once
 * answers for failures, driven on an MDT target directly with several client UUIDs.
 */
afterAll(removeTempDirs)

const SOFT = 30_000
const HARD = 90_000
const tunables = { recoverySoftMs: SOFT, recoveryHardMs: HARD }

const targets: Target[] = []
afterEach(async () => {
  for (const t of targets.splice(0)) await t.stop(false).catch(() => undefined)
})

async function open(dir: string, clock: ManualClock, log = captureLogger('info')) {
  const r = await openTarget({ dir, kind: 'mdt', clock, log: log.log, tunables })
  targets.push(r.target)
  return { ...r, log }
}

/** Crash: the uncommitted tail is lost with the target's memory. */
async function crash(t: Target) {
  await t.stop(false)
  targets.splice(targets.indexOf(t), 1)
}

/** A modifying request as an import keeps it for replay. */
interface Kept {
  c: TestClient
  op: 'mdt_create' | 'mdt_unlink' | 'mdt_rename'
  args: Record<string, unknown>
  xid: number
  transno: number
  body: unknown
}

async function kept(c: TestClient, op: Kept['op'], args: Record<string, unknown>): Promise<Kept> {
  const r = await c.ok(op, args)
  return { c, op, args, xid: c.xid, transno: r.transno, body: r.body }
}

const replay = (k: Kept) => k.c.call(k.op, k.args, { flags: ['replay'], xid: k.xid, transno: k.transno, replayReply: k.body, lastXid: k.c.xid })
const mk = (parent: number, name: string, type: 'reg' | 'dir' = 'reg') => ({ parent, name, type, mode: 0o644, uid: 0, gid: 0, time: 1 })
const lookup = (c: TestClient, parent: number, name: string) => c.call('mdt_lookup', { parent, name })
const fidOf = (k: Kept) => (k.body as { attr: MdtAttr }).attr.fid

describe('version-based recovery', () => {
  it('a client that died with the MDS loses its work; the survivor keeps its own, later in transno order, and is not evicted', async () => {
    const dir = await tempDir('lp-vbr')
    const clock = new ManualClock()
    let { target: t, log } = await open(dir, clock)
    const a = new TestClient(t, 'client-A')
    const b = new TestClient(t, 'client-B')
    await a.connect()
    await b.connect()
    const v1 = (await b.ok<{ attr: MdtAttr }>('mdt_create', mk(1, 'v1', 'dir'))).body.attr.fid
    await b.ok('sync') // the barrier: what follows is never committed
    const two = await kept(a, 'mdt_create', mk(v1, 'two'))
    const one = await kept(b, 'mdt_create', mk(v1, 'one'))
    expect(one.transno).toBe(two.transno + 1)
    await crash(t)

    ;({ target: t, log } = await open(dir, clock))
    a.target = t // A is dead: it never reconnects
    b.target = t
    await b.connect()
    const replayed = replay(one)
    await clock.advance(SOFT - 1)
    expect(t.recoveryStatus()).toMatchObject({ status: 'RECOVERING', queued_requests: 1 })
    // The window ends: A, who never came back, goes; B's replay runs past A's lost transno.
    await clock.advance(1)
    const r = await replayed
    expect(r.status).toBe(0)
    expect(r.transno).toBe(one.transno)
    expect((await b.replayDone()).status).toBe(0)
    expect(t.recoveryStatus()).toMatchObject({ status: 'COMPLETE', completed_clients: '1/2', evicted_clients: 1, vbr_replayed: 1, vbr_failed: 0 })
    expect(log.messages()).toContain('spfs-MDT0000: Recovery over after 0:30, of 2 clients 1 recovered and 1 were evicted.')

    const found = await lookup(b, v1, 'one')
    expect(found.status).toBe(0)
    expect((found.body as { attr: MdtAttr }).attr.fid).toBe(fidOf(one))
    expect((await lookup(b, v1, 'two')).status).toBe(-2)
    // B is still connected and works on.
    expect((await b.call('mdt_create', mk(v1, 'three'))).status).toBe(0)
    expect(t.clients().map((c) => c.uuid)).toEqual(['client-B'])
  })

  it('an unlink replay never removes another inode that took the name: version mismatch, its client alone is evicted', async () => {
    const dir = await tempDir('lp-vbr')
    const clock = new ManualClock()
    let { target: t, log } = await open(dir, clock)
    const [a, b, d] = ['client-A', 'client-B', 'client-D'].map((u) => new TestClient(t, u)) as [TestClient, TestClient, TestClient]
    for (const c of [a, b, d]) await c.connect()
    const x = (await a.ok<{ attr: MdtAttr }>('mdt_create', mk(1, 'f'))).body.attr.fid
    await a.ok('sync')
    // D moves f away, B makes a new f (W), A removes that new f: only D's rename is lost with D.
    const mv = await kept(d, 'mdt_rename', { parent: 1, name: 'f', new_parent: 1, new_name: 'g', time: 2, fid: x })
    const mkW = await kept(b, 'mdt_create', mk(1, 'f'))
    const w = fidOf(mkW)
    const rm = await kept(a, 'mdt_unlink', { parent: 1, name: 'f', dir: false, time: 3, fid: w })
    expect([mv.transno, mkW.transno, rm.transno]).toEqual([2, 3, 4])
    await crash(t)

    ;({ target: t, log } = await open(dir, clock))
    for (const c of [a, b, d]) c.target = t
    await a.connect()
    await b.connect()
    const ra = replay(rm)
    const rb = replay(mkW)
    await clock.advance(SOFT)
    // f is X again: B's create finds its name taken by another inode, A's unlink finds f naming X, not W.
    expect((await rb).status).toBe(-75)
    const res = await ra
    expect(res.status).toBe(-75)
    expect(res.error).toMatch(/version mismatch on 'f' in directory 1: replay expects FID \d+, the name now names FID \d+/)
    expect(log.messages()).toContainEqual(expect.stringMatching(/^spfs-MDT0000: version mismatch on 'f' in directory 1: .* evicting client client-A$/))
    expect(t.recoveryStatus()).toMatchObject({ status: 'COMPLETE', evicted_clients: 3, vbr_failed: 2 })
    // X is untouched.
    const c = new TestClient(t, 'client-C')
    await c.connect()
    expect((await lookup(c, 1, 'f')).body).toMatchObject({ attr: { fid: x, nlink: 1 } })
  })

  it('a replay finds the versions its original found, or fails with nothing changed', async () => {
    const dir = await tempDir('lp-vbr')
    const clock = new ManualClock()
    let { target: t } = await open(dir, clock)
    const a = new TestClient(t, 'client-A')
    const d = new TestClient(t, 'client-D')
    await a.connect()
    await d.connect()
    const f = (await a.ok<{ attr: MdtAttr; pre_versions: Record<string, number> }>('mdt_create', mk(1, 'f'))).body
    expect(f.pre_versions).toEqual({ [f.attr.fid]: 0 })
    await a.ok('sync')
    const made = (await a.ok('sync')).lastCommitted
    // D changes f (lost with D), then A changes it again, having seen D's change.
    const dset = await d.ok<{ pre_versions: Record<string, number> }>('mdt_setattr', { fid: f.attr.fid, mode: 0o600 })
    expect(dset.body.pre_versions).toEqual({ [f.attr.fid]: made })
    const aset = await kept(a, 'mdt_rename', { parent: 1, name: 'f', new_parent: 1, new_name: 'h', time: 5, fid: f.attr.fid })
    expect((aset.body as { pre_versions: Record<string, number> }).pre_versions).toEqual({ [f.attr.fid]: dset.transno })
    await crash(t)

    ;({ target: t } = await open(dir, clock))
    a.target = t
    await a.connect()
    const r = replay(aset)
    await clock.advance(SOFT)
    expect((await r).error).toBe(`version mismatch on FID ${f.attr.fid}: replay expects ${dset.transno}, object has ${made}`)
    const c = new TestClient(t, 'client-C')
    await c.connect()
    expect((await lookup(c, 1, 'f')).status).toBe(0)
    expect((await lookup(c, 1, 'h')).status).toBe(-2)
  })

  it('a new unlink or rename naming an inode the name no longer names is refused (ESTALE), nothing changed', async () => {
    const { target: t } = await open(await tempDir('lp-vbr'), new ManualClock())
    const c = new TestClient(t, 'client-A')
    await c.connect()
    const x = (await c.ok<{ attr: MdtAttr }>('mdt_create', mk(1, 'f'))).body.attr.fid
    const y = (await c.ok<{ attr: MdtAttr }>('mdt_create', mk(1, 'g'))).body.attr.fid
    expect((await c.call('mdt_unlink', { parent: 1, name: 'f', dir: false, time: 2, fid: y })).status).toBe(-116)
    expect((await c.call('mdt_unlink', { parent: 1, name: 'nope', dir: false, time: 2, fid: y })).status).toBe(-2)
    expect((await c.call('mdt_rename', { parent: 1, name: 'f', new_parent: 1, new_name: 'g', time: 2, fid: y })).status).toBe(-116)
    expect((await c.call('mdt_rename', { parent: 1, name: 'f', new_parent: 1, new_name: 'g', time: 2, fid: x, new_fid: x })).status).toBe(-116)
    expect((await lookup(c, 1, 'f')).body).toMatchObject({ attr: { fid: x } })
    expect((await lookup(c, 1, 'g')).body).toMatchObject({ attr: { fid: y } })
    const mv = await c.ok<{ fid: number; pre_versions: Record<string, number> }>('mdt_rename', { parent: 1, name: 'f', new_parent: 1, new_name: 'g', time: 3, fid: x, new_fid: y })
    expect(Object.keys(mv.body.pre_versions).map(Number).sort()).toEqual([x, y].sort())
    expect((await lookup(c, 1, 'g')).body).toMatchObject({ attr: { fid: x } })
  })
})

/** A slow journal: appends wait until `open()`; `held` resolves at the first one held. */
function holdJournal() {
  let open!: () => void
  const gate = new Promise<void>((r) => (open = r))
  let entered!: () => void
  const held = new Promise<void>((r) => (entered = r))
  const append = Journal.prototype.append
  const spy = vi.spyOn(Journal.prototype, 'append').mockImplementation(async function (this: Journal, json, data) {
    entered()
    await gate
    return append.call(this, json, data)
  })
  return { held, open, restore: () => (open(), spy.mockRestore()) }
}

/** Creates until one finds the committed FID range spent and waits (with the journal held) for the next. */
async function createUntilWaiting(c: TestClient, held: Promise<void>): Promise<{ name: string; xid: number; original: Promise<TargetReply> }> {
  for (let i = 0; ; i++) {
    const name = `f${i}`
    const original = c.call('mdt_create', mk(1, name))
    if (await Promise.race([original.then(() => false), held.then(() => true)])) return { name, xid: c.xid, original }
  }
}

/** An MDT granting FIDs four at a time, its client connected. */
async function rangesOfFour() {
  const dir = await tempDir('lp-fid')
  const clock = new ManualClock()
  const mdt = new MdtBackend({ dir: path.join(dir, 'mdtfs'), clock, fidRange: 4 })
  const t = await Target.open({ dir, clock, log: silentLogger, replayable: true, tunables: testTunables(), name: MDT_NAME, kind: 'mdt', backend: mdt })
  targets.push(t)
  t.start()
  const c = new TestClient(t, 'client-A')
  await c.connect()
  return { t, c, clock }
}

describe('a FID is given once, ever', () => {
  it('a create lost with the uncommitted tail never has its FID given again', async () => {
    const dir = await tempDir('lp-fid')
    const clock = new ManualClock()
    let { target: t } = await open(dir, clock)
    const c = new TestClient(t, 'client-A')
    await c.connect()
    const first = (await c.ok<{ attr: MdtAttr }>('mdt_create', mk(1, 'kept'))).body.attr.fid
    await c.ok('sync')
    const lost = (await c.ok<{ attr: MdtAttr }>('mdt_create', mk(1, 'lost'))).body.attr.fid
    expect(lost).toBe(first + 1)
    await crash(t)

    ;({ target: t } = await open(dir, clock))
    c.target = t
    await c.connectAndRecover() // the client dropped its request: no replay
    const fresh = (await c.ok<{ attr: MdtAttr }>('mdt_create', mk(1, 'new'))).body.attr.fid
    expect(fresh).toBeGreaterThan(lost)
    expect((await lookup(c, 1, 'lost')).status).toBe(-2)
    // The range grant took no transno: the client's numbering has no hole.
    expect(t.lastTransno).toBe(2)
  })

  it('creates wait for the next range to commit when theirs runs out, and numbering has no holes', async () => {
    const { c } = await rangesOfFour()
    // Ten at once: three ranges of four, each committed before its first FID is given.
    const made = await Promise.all(Array.from({ length: 10 }, (_, i) => c.ok<{ attr: MdtAttr }>('mdt_create', mk(1, `f${i}`))))
    const fids = made.map((r) => r.body.attr.fid)
    expect(new Set(fids).size).toBe(10)
    expect(Math.min(...fids)).toBe(2)
    // The ranges took no transno.
    expect(made.map((r) => r.transno).sort((x, y) => x - y)).toEqual([1, 2, 3, 4, 5, 6, 7, 8, 9, 10])
  })

  it('creates go on under a replay barrier from the range committed before it', async () => {
    const { target: t } = await open(await tempDir('lp-fid'), new ManualClock())
    const c = new TestClient(t, 'client-A')
    await c.connect()
    await t.barrier()
    const r = await c.call('mdt_create', mk(1, 'after-barrier'))
    expect(r.status).toBe(0)
  })
})

describe('exactly once, failures too', () => {
  it("a failed request's resend gets the same failure back, even after a restart, until last_xid passes it", async () => {
    const dir = await tempDir('lp-once')
    const clock = new ManualClock()
    let { target: t } = await open(dir, clock)
    const c = new TestClient(t, 'client-A')
    await c.connect()
    await c.ok('mdt_create', mk(1, 'x'))
    const failed = await c.call('mdt_create', { ...mk(1, 'x'), exclusive: true })
    expect(failed.status).toBe(-17)
    const xid = c.xid
    await c.ok('mdt_unlink', { parent: 1, name: 'x', dir: false, time: 2 }, { lastXid: xid - 1 })
    // Executed again, the create would succeed now: the saved answer comes back instead.
    const resend = (lastXid = xid - 1) => c.call('mdt_create', { ...mk(1, 'x'), exclusive: true }, { flags: ['resend'], xid, lastXid })
    const again = await resend()
    expect([again.status, again.transno, again.error]).toEqual([failed.status, 0, failed.error])
    expect((await lookup(c, 1, 'x')).status).toBe(-2)
    // Durable with the next batch.
    await c.ok('sync', {}, { lastXid: xid - 1 })
    await crash(t)
    ;({ target: t } = await open(dir, clock))
    c.target = t
    await c.connect()
    // Its answer still unseen: last_xid stays below it.
    expect((await c.call('ping', {}, { flags: ['replay_done'], lastXid: xid - 1 })).status).toBe(0)
    expect((await resend()).status).toBe(-17)
    // The client got its answer (last_xid passed it): the saved reply goes.
    await c.ok('ping', {}, { lastXid: xid })
    expect((await resend(xid)).status).toBe(0)
  })

  it('a resend that arrives while its original waits for a FID range gets the original reply, and the create runs once', async () => {
    const { t, c, clock } = await rangesOfFour()
    const journal = holdJournal()
    let first: TargetReply, again: TargetReply
    let name = ''
    let xid = 0
    try {
      const waiting = await createUntilWaiting(c, journal.held)
      ;({ name, xid } = waiting)
      // No reply in time: the client reconnects and sends the create again.
      await c.connect()
      const resend = c.call('mdt_create', mk(1, name), { flags: ['resend'], xid })
      await clock.advance(0)
      journal.open()
      ;[first, again] = await Promise.all([waiting.original, resend])
    } finally {
      journal.restore()
    }
    expect(first!.status).toBe(0)
    expect([again!.status, again!.transno, again!.body]).toEqual([0, first!.transno, first!.body])
    // The saved reply is the success, for a resend that comes later still.
    const later = await c.call('mdt_create', mk(1, name), { flags: ['resend'], xid })
    expect([later.status, later.transno, later.body]).toEqual([0, first!.transno, first!.body])
    // Executed once: no transno after its own, and the file is the one the reply names.
    expect(t.lastTransno).toBe(first!.transno)
    expect((await lookup(c, 1, name)).body).toEqual({ attr: (first!.body as { attr: MdtAttr }).attr })
  })

  it('a request whose client is evicted while it waits for a FID range does not run', async () => {
    const { t, c } = await rangesOfFour()
    const journal = holdJournal()
    try {
      const { name, original } = await createUntilWaiting(c, journal.held)
      t.evict('client-A', 'test')
      journal.open()
      const r = await original
      expect([r.status, r.error]).toEqual([-107, `${t.name}: client client-A was evicted while its request waited`])
      await c.connect()
      expect((await lookup(c, 1, name)).status).toBe(-2)
    } finally {
      journal.restore()
    }
  })

  it('a connect of the same import with a lower conn_cnt gets EALREADY and does not lower the export', async () => {
    const { target: t } = await open(await tempDir('lp-once'), new ManualClock())
    const c = new TestClient(t, 'client-A')
    await c.connect()
    await c.connect()
    expect(c.connCnt).toBe(2)
    c.connCnt = 1
    const late = await c.call('connect', { prev_handle: c.handle })
    expect(late.status).toBe(-114)
    expect(late.error).toMatch(/already connected at a greater conn_cnt: 2 > 1/)
    // Still at conn_cnt 2: a request from connection 1 is stale.
    expect((await c.call('ping')).flags).toContain('stale_conn')
    c.connCnt = 2
    expect((await c.call('ping')).status).toBe(0)
  })
})
