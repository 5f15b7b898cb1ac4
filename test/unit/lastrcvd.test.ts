import { describe, it, expect, afterAll, afterEach } from 'vitest'
import { ManualClock } from '../../src/common/clock.js'
import { LastRcvd } from '../../src/server/target/lastrcvd.js'
import type { Target } from '../../src/server/target/target.js'
import type { MdtAttr } from '../../src/protocol/ops.js'
import { tempDir, removeTempDirs } from '../helpers/nodes.js'
import { openTarget, TestClient } from '../helpers/target.js'

afterAll(removeTempDirs)

describe('LastRcvd table', () => {
  it('keeps a reply per request until last_xid passes it', () => {
    const t = new LastRcvd()
    t.applyMeta({ k: 'client_add', v: { uuid: 'A', handle: '0000000000000001', lastTransno: 0, lastXid: 0 } })
    t.record('A', 5, 1, { r: 5 })
    t.record('A', 7, 2, { r: 7 })
    t.record('A', 9, 3, { r: 9 })
    t.record('B', 7, 4, { r: 'B7' })
    expect(t.find('A', 7)).toEqual({ xid: 7, transno: 2, body: { r: 7 } })
    expect(t.find('A', 8)).toBeUndefined()
    expect(t.clients.get('A')).toMatchObject({ lastTransno: 3, lastXid: 9 })
    t.prune('A', 7)
    expect(t.find('A', 5)).toBeUndefined()
    expect(t.find('A', 7)).toBeUndefined()
    expect(t.find('A', 9)).toMatchObject({ transno: 3 })
    // Another client's replies are its own.
    expect(t.find('B', 7)).toMatchObject({ transno: 4 })
  })

  it("keeps a failed request's answer, without a transno, through an image (a checkpoint) too", () => {
    const t = new LastRcvd()
    t.applyMeta({ k: 'client_add', v: { uuid: 'A', handle: '0000000000000001', lastTransno: 0, lastXid: 0 } })
    t.record('A', 3, 1, { r: 3 })
    t.applyMeta({ k: 'client_fail', uuid: 'A', xid: 4, status: -17, error: "'x' exists" })
    const copy = LastRcvd.load(JSON.parse(JSON.stringify(t.image())))
    expect(copy.find('A', 4)).toEqual({ xid: 4, transno: 0, body: {}, status: -17, error: "'x' exists" })
    expect(copy.clients.get('A')).toMatchObject({ lastTransno: 1, lastXid: 4 })
    copy.prune('A', 4)
    expect(copy.find('A', 4)).toBeUndefined()
  })

  it('forgets a removed client with its replies; an image round-trips', () => {
    const t = new LastRcvd()
    for (const uuid of ['A', 'B']) t.applyMeta({ k: 'client_add', v: { uuid, handle: '00000000000000aa', lastTransno: 0, lastXid: 0 } })
    t.record('A', 1, 1, { a: 1 })
    t.record('B', 2, 2, { b: 2 })
    const copy = LastRcvd.load(t.image())
    expect(copy.image()).toEqual(t.image())
    expect(copy.find('B', 2)).toMatchObject({ body: { b: 2 } })
    t.applyMeta({ k: 'client_del', uuid: 'A' })
    expect(t.clients.has('A')).toBe(false)
    expect(t.find('A', 1)).toBeUndefined()
    expect(t.image().replies.map((r) => r.uuid)).toEqual(['B'])
    // The image is a copy: changing the table later does not change it.
    const img = copy.image()
    copy.record('A', 3, 3, {})
    expect(img.clients.find((c) => c.uuid === 'A')!.lastXid).toBe(1)
  })
})

describe('reply reconstruction', () => {
  const targets: Target[] = []
  afterEach(async () => {
    for (const t of targets.splice(0)) await t.stop(false).catch(() => undefined)
  })

  async function ost(dir: string, tunables = {}) {
    const r = await openTarget({ dir, kind: 'ost', clock: new ManualClock(), tunables })
    targets.push(r.target)
    return r.target
  }
  async function mdt(dir: string) {
    const r = await openTarget({ dir, kind: 'mdt', clock: new ManualClock() })
    targets.push(r.target)
    return r.target
  }
  const append = (c: TestClient, data: string, o = {}) =>
    c.call('ost_write', { fid: 1, stripe: 0, offset: 0, append: true }, { bulk: Buffer.from(data), ...o })
  const size = async (c: TestClient) => (await c.ok('ost_read', { fid: 1, stripe: 0, offset: 0, length: 1000 })).bulk!.toString()

  it('a resent write gets its original reply and does not execute again', async () => {
    const t = await ost(await tempDir('lp-lr'))
    const c = new TestClient(t, 'client-A')
    await c.connect()
    const first = await append(c, 'hello')
    expect(first.body).toMatchObject({ offset: 0, size: 5 })
    const x = c.xid
    // The reply was lost on the way: the client resends with the same xid (last_xid below it).
    const again = await append(c, 'hello', { flags: ['resend'], xid: x, lastXid: x - 1 })
    expect(again.status).toBe(0)
    expect(again.transno).toBe(first.transno)
    expect(again.body).toEqual(first.body)
    expect(await size(c)).toBe('hello')
    expect(t.lastTransno).toBe(first.transno)
  })

  it('a resend whose original never arrived executes normally', async () => {
    const t = await ost(await tempDir('lp-lr'))
    const c = new TestClient(t, 'client-A')
    await c.connect()
    await append(c, 'one')
    const r = await append(c, 'two', { flags: ['resend'] })
    expect(r.body).toMatchObject({ offset: 3, size: 6 })
    expect(await size(c)).toBe('onetwo')
  })

  it('the saved reply goes once last_xid passes it', async () => {
    const t = await ost(await tempDir('lp-lr'))
    const c = new TestClient(t, 'client-A')
    await c.connect()
    await append(c, 'abc')
    const x = c.xid
    // The next request says every xid up to x got its reply.
    await c.ok('ping', {}, { lastXid: x })
    const r = await append(c, 'abc', { flags: ['resend'], xid: x, lastXid: x - 1 })
    // No saved reply any more: a (misbehaving) resend executes again.
    expect(r.body).toMatchObject({ offset: 3, size: 6 })
  })

  it('saved replies are per client', async () => {
    const t = await ost(await tempDir('lp-lr'))
    const a = new TestClient(t, 'client-A')
    const b = new TestClient(t, 'client-B')
    await a.connect()
    await b.connect()
    a.xid = b.xid = 100
    await append(a, 'aaa')
    const rb = await append(b, 'bb', { flags: ['resend'], xid: 101, lastXid: 100 })
    expect(rb.body).toMatchObject({ offset: 3, size: 5 })
  })

  it('a resent create gets its original reply (same FID), not EEXIST', async () => {
    const t = await mdt(await tempDir('lp-lr'))
    const c = new TestClient(t, 'client-A')
    await c.connect()
    const args = { parent: 1, name: 'f', type: 'reg', mode: 0o644, uid: 0, gid: 0, time: 1, open_flags: 2 }
    const first = await c.ok<{ attr: MdtAttr; handle: string }>('mdt_create', args)
    const again = await c.ok<{ attr: MdtAttr; handle: string }>('mdt_create', args, { flags: ['resend'], xid: c.xid, lastXid: c.xid - 1 })
    expect(again.body).toEqual(first.body)
    expect(again.transno).toBe(first.transno)
    // Without the resend flag it is a new request: the name exists.
    const dup = await c.call('mdt_create', { ...args, exclusive: true })
    expect(dup.status).toBe(-17)
  })

  for (const checkpoint of [false, true]) {
    it(`saved replies survive a restart (${checkpoint ? 'from a checkpoint' : 'from the journal'})`, async () => {
      const dir = await tempDir('lp-lr')
      const tun = checkpoint ? { checkpointBytes: 1 } : {}
      let t = await ost(dir, tun)
      const c = new TestClient(t, 'client-A')
      await c.connect()
      const first = await append(c, 'persist')
      const x = c.xid
      // Its reply is lost: the client still waits for it, so its last_xid stays below x.
      c.unanswered.add(x)
      await append(c, '+more')
      await c.ok('sync')
      if (checkpoint) {
        await append(c, '!')
        await c.ok('sync')
      }
      const content = await size(c)
      await t.stop(false) // crash
      targets.splice(0)

      t = await ost(dir, tun)
      c.target = t
      const conn = await c.connect()
      expect(conn.body.recovering).toBe(true)
      expect((await c.replayDone()).status).toBe(0)
      const again = await append(c, 'persist', { flags: ['resend'], xid: x })
      expect(again.transno).toBe(first.transno)
      expect(again.body).toEqual(first.body)
      expect(await size(c)).toBe(content)
    })
  }

  it('a client that disconnected is not waited for after a crash (its departure is committed before the reply)', async () => {
    const dir = await tempDir('lp-lr')
    let t = await ost(dir)
    const gone = new TestClient(t, 'client-gone')
    const stays = new TestClient(t, 'client-stays')
    await gone.connect()
    await stays.connect()
    await gone.ok('disconnect')
    await t.stop(false) // crash: nothing committed after the disconnect's reply
    targets.splice(0)
    t = await ost(dir)
    expect(t.recoveryStatus().connected_clients).toBe('0/1')
    expect(t.recoveryStatus().clients?.map((c) => c.uuid)).toEqual(['client-stays'])
  })

  it('a replay of a transno already committed is answered from the saved reply, not executed', async () => {
    const dir = await tempDir('lp-lr')
    let t = await ost(dir)
    const c = new TestClient(t, 'client-A')
    await c.connect()
    const first = await append(c, 'once')
    const x = c.xid
    await c.ok('sync', {}, { lastXid: x - 1 })
    await t.stop(false)
    targets.splice(0)
    t = await ost(dir)
    c.target = t
    await c.connect()
    const r = await append(c, 'once', { flags: ['replay'], xid: x, transno: first.transno, lastXid: x - 1 })
    expect(r.status).toBe(0)
    expect(r.body).toEqual(first.body)
    expect(r.transno).toBe(first.transno)
    await c.replayDone()
    expect(await size(c)).toBe('once')
  })
})
