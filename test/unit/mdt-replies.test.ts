import { describe, it, expect, afterAll, afterEach } from 'vitest'
import { ManualClock } from '../../src/common/clock.js'
import type { Target } from '../../src/server/target/target.js'
import { MAX_LOOKUP_BATCH, type DirsChanged, type MdtAttr } from '../../src/protocol/ops.js'
import { tempDir, removeTempDirs } from '../helpers/nodes.js'
import { openTarget, TestClient } from '../helpers/target.js'
import { silentLogger } from '../../src/common/log.js'
import type { Mgc } from '../../src/mgc/mgc.js'
import type { PtlrpcClient } from '../../src/ptlrpc/client.js'
import { Osp } from '../../src/server/osp.js'

afterAll(removeTempDirs)

const targets: Target[] = []
afterEach(async () => {
  for (const t of targets.splice(0)) await t.stop(false).catch(() => undefined)
})

async function client(): Promise<TestClient> {
  const { target } = await openTarget({ dir: await tempDir('lp-mdt'), kind: 'mdt', clock: new ManualClock() })
  targets.push(target)
  const c = new TestClient(target, 'client-A')
  await c.connect()
  return c
}
const attr = async (c: TestClient, fid: number) => (await c.ok<{ attr: MdtAttr }>('mdt_getattr', { fid })).body.attr
const make = (c: TestClient, parent: number, name: string, type: 'reg' | 'dir', time: number) =>
  c.ok<{ attr: MdtAttr } & DirsChanged>('mdt_create', { parent, name, type, mode: 0o755, uid: 0, gid: 0, time })

describe('MDT replies to namespace changes', () => {

  it('carry the new attributes of every directory they changed, as a getattr would give them', async () => {
    const c = await client()
    const a = (await make(c, 1, 'a', 'dir', 10)).body.attr.fid
    const b = (await make(c, 1, 'b', 'dir', 11)).body.attr.fid

    const mk = await make(c, a, 'sub', 'dir', 20)
    expect(mk.body.dirs).toEqual([await attr(c, a)])
    expect(mk.body.dirs[0]).toMatchObject({ fid: a, nlink: 3, mtime: 20, ctime: 20 })

    const f = (await make(c, a, 'f', 'reg', 21)).body.attr.fid
    const ln = await c.ok<DirsChanged>('mdt_link', { fid: f, parent: b, name: 'g', time: 30 })
    expect(ln.body.dirs).toEqual([await attr(c, b)])
    expect(ln.body.dirs[0]).toMatchObject({ fid: b, mtime: 30 })

    const mv = await c.ok<DirsChanged>('mdt_rename', { parent: a, name: 'sub', new_parent: b, new_name: 'sub', time: 40 })
    expect(mv.body.dirs).toEqual([await attr(c, a), await attr(c, b)])
    expect(mv.body.dirs.map((d) => [d.fid, d.nlink, d.mtime])).toEqual([
      [a, 2, 40],
      [b, 3, 40],
    ])

    // Within one directory, that directory once.
    const mv2 = await c.ok<DirsChanged>('mdt_rename', { parent: b, name: 'g', new_parent: b, new_name: 'h', time: 45 })
    expect(mv2.body.dirs).toEqual([await attr(c, b)])

    const rm = await c.ok<DirsChanged>('mdt_unlink', { parent: a, name: 'f', dir: false, time: 50 })
    expect(rm.body.dirs).toEqual([await attr(c, a)])
    expect(rm.body.dirs[0]).toMatchObject({ fid: a, mtime: 50 })
  })

  it('carry each directory change counter before and after: a client that knew the one before missed nothing', async () => {
    const c = await client()
    const mk = await make(c, 1, 'd', 'dir', 10)
    const d = mk.body.attr.fid
    expect(mk.body.attr.change).toBe(0)
    expect([mk.body.was, mk.body.dirs.map((x) => x.change)]).toEqual([[0], [1]])

    const f = await make(c, d, 'f', 'reg', 11)
    expect([f.body.was, f.body.dirs.map((x) => x.change)]).toEqual([[0], [1]])
    // Someone else's change in between shows as a counter before that is not the one last seen.
    await make(c, d, 'other', 'reg', 12)
    const g = await make(c, d, 'g', 'reg', 13)
    expect([g.body.was, g.body.dirs.map((x) => x.change)]).toEqual([[2], [3]])
    const mv = await c.ok<DirsChanged>('mdt_rename', { parent: d, name: 'g', new_parent: 1, new_name: 'g', time: 14 })
    expect([mv.body.was, mv.body.dirs.map((x) => x.change)]).toEqual([[3, 1], [4, 2]])
    const rm = await c.ok<DirsChanged>('mdt_unlink', { parent: d, name: 'f', dir: false, time: 15 })
    expect([rm.body.was, rm.body.dirs.map((x) => x.change)]).toEqual([[4], [5]])
    expect((await attr(c, d)).change).toBe(5)
    // A failed change changes nothing.
    expect((await c.call('mdt_create', { parent: d, name: 'other', type: 'reg', mode: 0o644, uid: 0, gid: 0, time: 16, exclusive: true })).status).not.toBe(0)
    expect((await attr(c, d)).change).toBe(5)
  })
})

describe('MDT batch lookup (statahead)', () => {
  it('answers each name as a lookup would, null where the directory has none', async () => {
    const c = await client()
    const d = (await make(c, 1, 'd', 'dir', 10)).body.attr.fid
    const f1 = (await make(c, d, 'f1', 'reg', 11)).body.attr.fid
    const sub = (await make(c, d, 'sub', 'dir', 12)).body.attr.fid
    const r = await c.ok<{ attrs: (MdtAttr | null)[] }>('mdt_batch_lookup', { parent: d, names: ['f1', 'f2', 'sub'] })
    expect(r.body.attrs).toEqual([await attr(c, f1), null, await attr(c, sub)])
    expect((await c.call('mdt_batch_lookup', { parent: f1, names: ['x'] })).error).toMatch(/is not a directory/)
    // The front refuses a batch longer than MAX_LOOKUP_BATCH before the MDT sees it.
    await expect(c.call('mdt_batch_lookup', { parent: d, names: Array.from({ length: MAX_LOOKUP_BATCH + 1 }, (_, i) => `f${i}`) })).rejects.toThrow(/"maximum": 256/)
  })
})

describe('MDT layouts', () => {
  /** The MDT's OSP, over an MGS whose configuration lists `registered` (changed at will), counting its reads. */
  function ospOver(registered: Set<number>) {
    const reads: number[] = []
    const mgc = {
      config: async () => {
        reads.push(registered.size)
        return { targets: [...registered].map((index) => ({ kind: 'ost', index, name: `spfs-OST${index.toString(16).padStart(4, '0')}` })) }
      },
    } as unknown as Mgc
    return { osp: new Osp(undefined as unknown as PtlrpcClient, mgc, 'spfs', silentLogger), reads }
  }

  it('name only OSTs the MGS lists, looked for afresh when the OSP does not know one: another is refused with EINVAL, creating nothing; a replay is not', async () => {
    const dir = await tempDir('lp-mdt')
    const clock = new ManualClock()
    const registered = new Set([1, 2, 7])
    const first = ospOver(registered)
    const tunables = { commitIntervalMs: 60_000 }
    let { target } = await openTarget({ dir, kind: 'mdt', clock, destroyer: first.osp, tunables })
    targets.push(target)
    const c = new TestClient(target, 'client-A')
    await c.connect()
    const args = (name: string, osts: number[]) => ({ parent: 1, name, type: 'reg', mode: 0o644, uid: 0, gid: 0, time: 1, layout: { stripe_size: 1 << 20, osts } })
    // Not committed: the client keeps it for replay.
    const early = await c.ok('mdt_create', args('early', [7]))
    const earlyXid = c.xid
    expect((await c.call('mdt_create', args('g', [2, 1]))).status).toBe(0)
    expect(first.reads).toEqual([3])
    const r = await c.call('mdt_create', args('f', [1, 4242]))
    expect([r.status, r.error]).toEqual([-22, 'the layout names OST index 4242, which the MGS does not list'])
    expect((await c.call('mdt_lookup', { parent: 1, name: 'f' })).status).toBe(-2)
    // An OST registered since the OSP last read the list is found there.
    registered.add(3)
    expect((await c.call('mdt_create', args('h', [3]))).status).toBe(0)
    expect(first.reads).toEqual([3, 3, 4])
    // A layout set on an empty file is checked the same way.
    const e = (await c.ok<{ attr: MdtAttr }>('mdt_create', { parent: 1, name: 'e', type: 'reg', mode: 0o644, uid: 0, gid: 0, time: 1 })).body.attr.fid
    expect((await c.call('mdt_setattr', { fid: e, layout: { stripe_size: 1 << 20, osts: [65535] } })).status).toBe(-22)

    // OST 7 gone from the list, the MDT restarts: the create it took is replayed as it was.
    registered.delete(7)
    await target.stop(false)
    targets.splice(0)
    ;({ target } = await openTarget({ dir, kind: 'mdt', clock, destroyer: ospOver(registered).osp, tunables }))
    targets.push(target)
    c.target = target
    await c.connect()
    const replayed = await c.call('mdt_create', args('early', [7]), { flags: ['replay'], xid: earlyXid, transno: early.transno, replayReply: early.body })
    expect(replayed.status).toBe(0)
  })
})
