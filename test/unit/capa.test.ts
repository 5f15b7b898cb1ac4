import { describe, it, expect, afterAll } from 'vitest'
import { deriveCapaKey, deriveKey, generateKey } from '../../src/common/keyfile.js'
import { CAPA_LIFETIME_MS, CAPA_RENEW_MS, capaRenewable, checkCapa, makeCapa } from '../../src/protocol/capa.js'
import { LpError } from '../../src/protocol/errno.js'
import { OPS, type Capa } from '../../src/protocol/ops.js'
import { CapaCache } from '../../src/osc/capas.js'
import { OstBackend } from '../../src/server/ost/ost.js'
import { tempDir, removeTempDirs } from '../helpers/nodes.js'
import path from 'node:path'
import { ManualClock } from '../../src/common/clock.js'
import { silentLogger } from '../../src/common/log.js'
import { MdtBackend } from '../../src/server/mdt/mdt.js'
import { Target } from '../../src/server/target/target.js'
import type { MdtAttr } from '../../src/protocol/ops.js'
import { MDT_NAME, TestClient, testTunables } from '../helpers/target.js'

afterAll(removeTempDirs)

const T0 = 1_800_000_000_000
const master = generateKey('spfs')
const key = deriveCapaKey(master)

function refusal(fn: () => void): string {
  try {
    fn()
  } catch (e) {
    if (e instanceof LpError && e.code === 'EACCES') return e.message
    throw e
  }
  return 'allowed'
}

describe('OST capabilities: made by the MDT, checked by the OST', () => {
  const rw = makeCapa(key, 7, 'client-a', 'rw', T0)
  const ro = makeCapa(key, 7, 'client-a', 'r', T0)

  it('the key is derived from the master alone, differs from every key a client holds, and is the same after a restart', () => {
    expect(deriveCapaKey(master)).toEqual(key)
    for (const cls of ['fs', 'node', 'admin'] as const) expect(deriveKey(master, cls).secret).not.toEqual(key)
    expect(deriveCapaKey(generateKey('spfs'))).not.toEqual(key)
    expect(() => deriveCapaKey(deriveKey(master, 'fs'))).toThrow(/derived from the master key/)
  })

  it('lives at least an hour and a rounding step at most more; grants minutes apart are the same capability', () => {
    expect(rw.expiry - T0).toBeGreaterThanOrEqual(CAPA_LIFETIME_MS)
    expect(rw.expiry - T0).toBeLessThanOrEqual(CAPA_LIFETIME_MS + 10 * 60_000)
    const early = Math.floor(T0 / 600_000) * 600_000 + 1
    expect(makeCapa(key, 7, 'client-a', 'rw', early + 60_000)).toEqual(makeCapa(key, 7, 'client-a', 'rw', early))
  })

  it('grants what it says to whom it says, on the file it names, while it lasts', () => {
    for (const op of ['ost_read', 'ost_getattr', 'ost_write', 'ost_punch', 'ost_setattr']) expect(refusal(() => checkCapa(key, rw, 7, 'client-a', op, T0))).toBe('allowed')
    for (const op of ['ost_read', 'ost_getattr']) expect(refusal(() => checkCapa(key, ro, 7, 'client-a', op, T0))).toBe('allowed')
    // The OSP's ops are the node key's business, not a capability's.
    expect(refusal(() => checkCapa(key, undefined, 7, 'osp', 'ost_destroy', T0))).toBe('allowed')
  })

  it('refuses none, a forged one, another file\'s, another client\'s, an expired one and an op it does not grant', () => {
    const forged: Capa = { ...rw, mac: Buffer.alloc(32, 1).toString('base64url') }
    const upgraded: Capa = { ...ro, ops: 'rw' }
    const extended: Capa = { ...rw, expiry: rw.expiry + 86_400_000 }
    const otherKey = makeCapa(deriveCapaKey(generateKey('spfs')), 7, 'client-a', 'rw', T0)
    const cases: Array<[string, () => void, RegExp]> = [
      ['none', () => checkCapa(key, undefined, 7, 'client-a', 'ost_read', T0), /carries no capability/],
      ['forged', () => checkCapa(key, forged, 7, 'client-a', 'ost_read', T0), /does not verify/],
      ['read-only made read-write', () => checkCapa(key, upgraded, 7, 'client-a', 'ost_write', T0), /does not verify/],
      ['expiry pushed out', () => checkCapa(key, extended, 7, 'client-a', 'ost_read', T0), /does not verify/],
      ['another filesystem', () => checkCapa(key, otherKey, 7, 'client-a', 'ost_read', T0), /does not verify/],
      ['another file', () => checkCapa(key, rw, 8, 'client-a', 'ost_read', T0), /is for FID 7/],
      ['another file, its FID rewritten', () => checkCapa(key, { ...rw, fid: 8 }, 8, 'client-a', 'ost_read', T0), /does not verify/],
      ['another client', () => checkCapa(key, rw, 7, 'client-b', 'ost_read', T0), /granted to another client/],
      ['expired', () => checkCapa(key, rw, 7, 'client-a', 'ost_read', rw.expiry), /expired/],
      ['write with a read grant', () => checkCapa(key, ro, 7, 'client-a', 'ost_write', T0), /reading only/],
      ['punch with a read grant', () => checkCapa(key, ro, 7, 'client-a', 'ost_punch', T0), /reading only/],
      ['setattr with a read grant', () => checkCapa(key, ro, 7, 'client-a', 'ost_setattr', T0), /reading only/],
    ]
    for (const [what, fn, why] of cases) expect(refusal(fn), what).toMatch(why)
  })

  it('a replayed change passes an expiry met since its first execution, but nothing else', () => {
    expect(refusal(() => checkCapa(key, rw, 7, 'client-a', 'ost_write', rw.expiry + 1, true))).toBe('allowed')
    expect(refusal(() => checkCapa(key, rw, 7, 'client-b', 'ost_write', rw.expiry + 1, true))).toMatch(/does not verify/)
    expect(refusal(() => checkCapa(key, ro, 7, 'client-a', 'ost_write', T0, true))).toMatch(/reading only/)
  })

  it('the client mends only an expired or missing one', () => {
    const msg = (fn: () => void) => new LpError('EACCES', refusal(fn))
    expect(capaRenewable(msg(() => checkCapa(key, rw, 7, 'client-a', 'ost_read', rw.expiry)))).toBe(true)
    expect(capaRenewable(msg(() => checkCapa(key, undefined, 7, 'client-a', 'ost_read', T0)))).toBe(true)
    expect(capaRenewable(msg(() => checkCapa(key, rw, 7, 'client-b', 'ost_read', T0)))).toBe(false)
    expect(capaRenewable(new LpError('EIO', 'the capability expired'))).toBe(false)
  })

  it('travels as an optional field of the OST ops, checked by the schema', () => {
    expect(OPS.ost_read.args.safeParse({ fid: 7, stripe: 0, offset: 0, length: 1, capa: rw }).success).toBe(true)
    expect(OPS.ost_read.args.safeParse({ fid: 7, stripe: 0, offset: 0, length: 1 }).success).toBe(true)
    expect(OPS.ost_write.args.safeParse({ fid: 7, stripe: 0, offset: 0, capa: { ...rw, ops: 'rwx' } }).success).toBe(false)
    expect(OPS.ost_getattr.args.safeParse({ objects: [{ fid: 7, stripe: 0, capa: { ...rw, mac: 'short' } }] }).success).toBe(false)
    // A client cannot make the MDT store a capability with a layout: the schema drops it.
    const made = OPS.mdt_create.args.parse({ parent: 1, name: 'f', type: 'reg', mode: 0o644, uid: 0, gid: 0, time: 1, layout: { stripe_size: 1 << 20, osts: [0], capa: rw } })
    expect(made.layout).toEqual({ stripe_size: 1 << 20, osts: [0] })
  })
})

describe("the client's capabilities", () => {
  function cache(max?: number) {
    let now = T0
    const renewals: number[] = []
    const c = new CapaCache(
      async (fid) => {
        renewals.push(fid)
        return makeCapa(key, fid, 'client-a', 'rw', now)
      },
      () => now,
      max,
    )
    return { c, renewals, setNow: (t: number) => void (now = t) }
  }
  const expired = new LpError('EACCES', 'ost_read of FID 7: the capability expired at ...')

  it('sends the noted one; renews one about to expire before use, once for many users', async () => {
    const { c, renewals, setNow } = cache()
    const cap = makeCapa(key, 7, 'client-a', 'rw', T0)
    c.note(7, cap)
    expect(await c.current(7)).toEqual(cap)
    setNow(cap.expiry - CAPA_RENEW_MS + 1)
    const [a, b] = await Promise.all([c.current(7), c.current(7)])
    expect(renewals).toEqual([7])
    expect(a!.expiry).toBeGreaterThan(cap.expiry)
    expect(b).toEqual(a)
  })

  it('a request refused for an expired capability is sent once more with a renewed one; other refusals are not', async () => {
    const { c, renewals } = cache()
    c.note(7, makeCapa(key, 7, 'client-a', 'r', T0))
    const sent: Array<Capa | undefined> = []
    const r = await c.with([7], async (capa) => {
      sent.push(capa(7))
      if (sent.length === 1) throw expired
      return 'ok'
    })
    expect(r).toBe('ok')
    expect(renewals).toEqual([7])
    expect(sent.map((s) => s?.ops)).toEqual(['r', 'rw'])
    // Refused again after renewal: the refusal stands (no loop).
    await expect(c.with([7], async () => Promise.reject(expired))).rejects.toBe(expired)
    const denied = new LpError('EACCES', 'ost_read of FID 7: the capability does not verify for client client-a')
    await expect(c.with([7], async () => Promise.reject(denied))).rejects.toBe(denied)
    expect(renewals).toEqual([7, 7])
  })

  it('keeps a wider grant over a narrower one while it lasts, and a bounded number of files', async () => {
    const { c } = cache(2)
    c.note(7, makeCapa(key, 7, 'client-a', 'rw', T0))
    c.note(7, makeCapa(key, 7, 'client-a', 'r', T0))
    expect((await c.current(7))!.ops).toBe('rw')
    c.note(8, makeCapa(key, 8, 'client-a', 'r', T0))
    c.note(9, makeCapa(key, 9, 'client-a', 'r', T0))
    expect(c.size).toBe(2)
    expect(await c.current(7)).toBeUndefined()
  })
})

describe('a keyed OST backend', () => {
  it('serves an object only with its capability; a replayed write passes after the expiry; an unkeyed OST asks none', async () => {
    const b = new OstBackend(await tempDir('lp-capa'), undefined, 'spfs-OST0000', key)
    const plain = new OstBackend(await tempDir('lp-capa'))
    await Promise.all([b.load(), plain.load()])
    try {
      const cap = makeCapa(key, 7, 'client-a', 'rw', T0)
      const ctx = (client: string, now = T0, replayReply?: unknown, transno = 10) => ({ client, bulk: [Buffer.from('data')], now, transno, replayReply })
      const refusedWith = (fn: () => unknown) => expect(fn).toThrow(expect.objectContaining({ code: 'EACCES' }))
      refusedWith(() => b.apply('ost_write', { fid: 7, stripe: 0, offset: 0 }, ctx('client-a')))
      refusedWith(() => b.apply('ost_write', { fid: 7, stripe: 0, offset: 0, capa: cap }, ctx('client-b')))
      refusedWith(() => b.apply('ost_write', { fid: 7, stripe: 0, offset: 0, capa: cap }, ctx('client-a', cap.expiry)))
      b.apply('ost_write', { fid: 7, stripe: 0, offset: 0, capa: cap }, ctx('client-a'))
      b.apply('ost_write', { fid: 7, stripe: 0, offset: 4, capa: cap }, ctx('client-a', cap.expiry + 1, { offset: 4, size: 8, pre_versions: { '7.0': 10 } }, 11))
      const read = await b.query('ost_read', { fid: 7, stripe: 0, offset: 0, length: 8, capa: cap }, ctx('client-a'))
      expect(read.bulk!.toString()).toBe('datadata')
      await expect(b.query('ost_read', { fid: 7, stripe: 0, offset: 0, length: 8 }, ctx('client-a'))).rejects.toMatchObject({ code: 'EACCES' })
      // A batch of objects: each file's own capability; one missing refuses the batch.
      const other = makeCapa(key, 8, 'client-a', 'r', T0)
      const objs = [{ fid: 7, stripe: 0, capa: cap }, { fid: 8, stripe: 0, capa: other }]
      expect(((await b.query('ost_getattr', { objects: objs }, ctx('client-a'))).body as { attrs: unknown[] }).attrs).toHaveLength(2)
      await expect(b.query('ost_getattr', { objects: [...objs, { fid: 9, stripe: 0, capa: other }] }, ctx('client-a'))).rejects.toMatchObject({ code: 'EACCES' })
      plain.apply('ost_write', { fid: 7, stripe: 0, offset: 0 }, ctx('anyone'))
    } finally {
      await Promise.all([b.close(), plain.close()])
    }
  })
})

describe('a keyed MDT', () => {
  it("grants, on a getattr naming an open of the file, what the open did, whoever's identity the request carries; only to that open's client", async () => {
    const dir = await tempDir('lp-capa')
    const clock = new ManualClock()
    const mdt = new MdtBackend({ dir: path.join(dir, 'mdtfs'), clock, capaKey: key })
    const target = await Target.open({ name: MDT_NAME, kind: 'mdt', dir, clock, log: silentLogger, backend: mdt, replayable: true, tunables: testTunables() })
    target.start()
    try {
      const owner = { uid: 1000, gid: 1000, groups: [] }
      const other = { uid: 2000, gid: 2000, groups: [] }
      const a = new TestClient(target, 'client-a')
      const b = new TestClient(target, 'client-b')
      await a.connect()
      await b.connect()
      await a.ok('mdt_setattr', { fid: 1, mode: 0o777 })
      // Made read-only by its creator, who keeps it open for writing (open(2) with O_CREAT allows it).
      const made = await a.ok<{ attr: MdtAttr; handle: string }>('mdt_create', {
        cred: owner, parent: 1, name: 'f', type: 'reg', mode: 0o444, uid: 1000, gid: 1000, time: 1, layout: { stripe_size: 1 << 20, osts: [1] }, open_flags: 1,
      })
      const fid = made.body.attr.fid
      const ops = async (c: TestClient, args: object) => (await c.ok<{ attr: MdtAttr }>('mdt_getattr', { fid, ...args })).body.attr.layout?.capa?.ops
      expect(made.body.attr.layout?.capa?.ops).toBe('rw')
      expect(await ops(a, { cred: other })).toBe('r')
      expect(await ops(a, { cred: owner })).toBe('r')
      expect(await ops(a, { cred: other, handle: made.body.handle })).toBe('rw')
      // Another client naming that handle, or the handle with another file: the caller's own rights.
      expect(await ops(b, { cred: other, handle: made.body.handle })).toBe('r')
      const g = await a.ok<{ attr: MdtAttr }>('mdt_create', { cred: owner, parent: 1, name: 'g', type: 'reg', mode: 0o444, uid: 1000, gid: 1000, time: 1, layout: { stripe_size: 1 << 20, osts: [1] } })
      expect((await a.ok<{ attr: MdtAttr }>('mdt_getattr', { fid: g.body.attr.fid, cred: other, handle: made.body.handle })).body.attr.layout?.capa?.ops).toBe('r')
    } finally {
      await target.stop(false)
    }
  })
})
