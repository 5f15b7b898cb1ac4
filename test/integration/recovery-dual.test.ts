/**
 * Recovery with several clients, in the spirit of Lustre's replay-dual.sh and replay-vbr.sh:
 * assembled clients (no FUSE) in this process, real server nodes SIGKILLed and failed over
 * to their partner NID. Every scenario starts from a freshly formatted filesystem.
 */
import { randomBytes } from 'node:crypto'
import path from 'node:path'
import { afterEach, describe, expect, it, vi } from 'vitest'
import { TARGET_NAMES, Tier, type RecoveryView, type TierClient } from '../helpers/tier.js'

const NET = '127.0.85'
const PORT = 28500
const MDT = TARGET_NAMES.mdt0
const OST = TARGET_NAMES.ost1
const KiB = 1024

let t: Tier | undefined
afterEach(async () => {
  await t?.down()
  t = undefined
}, 60_000)

async function up(): Promise<Tier> {
  t = await Tier.up({ net: NET, port: PORT })
  return t
}

/** Clients take turns, one operation each, so that their transnos interleave. */
async function interleaved(clients: TierClient[], rounds: number, op: (c: TierClient, i: number) => Promise<void>): Promise<void> {
  for (let i = 0; i < rounds; i++) for (const c of clients) await op(c, i)
}

/** Wait for the end of the MDT's recovery; how long it took from the call (the target serving again). */
async function timedRecovery(tier: Tier): Promise<{ view: RecoveryView; ms: number }> {
  const t0 = Date.now()
  const view = await tier.recovered('mdt0')
  return { view, ms: Date.now() - t0 }
}

function stateOf(v: RecoveryView, c: TierClient): string | undefined {
  return v.clients?.find((x) => x.uuid === c.uuid)?.state
}

describe('two clients, one MDT barrier, the MDS fails over', () => {
  it('both reconnect and replay; every name is there with the FID its create returned', async () => {
    const tier = await up()
    const a = await tier.client('a')
    const b = await tier.client('b')
    await a.mkdir('/d')
    await tier.barrier('mdt0')
    const fids = new Map<string, number>()
    await interleaved([a, b], 10, async (c, i) => void fids.set(`${c.name}${i}`, (await c.write(`/d/${c.name}${i}`)).fid))
    const mds = await tier.failover('mdt0')
    expect(mds.nid).toBe(tier.nid('mds2'))
    const { view, ms } = await timedRecovery(tier)
    console.log(`recovery without a dead client: ${ms} ms (${JSON.stringify(view)})`)
    expect(view.completed_clients).toBe('2/2')
    expect(view.evicted_clients).toBe(0)
    const seen = await tier.fresh(async (v) => Object.fromEntries(await Promise.all((await v.names('/d')).map(async (n) => [n, await v.fid(`/d/${n}`)]))))
    expect(seen).toEqual(Object.fromEntries(fids))
    expect(await a.names('/d')).toEqual([...fids.keys()].sort())
    expect(a.evictedBy(MDT) || b.evictedBy(MDT)).toBe(false)
  })
})

describe('version-based recovery: a client dies with the MDS', () => {
  it("the survivor keeps its create and is not evicted; the dead client's create is gone", async () => {
    const tier = await up()
    const a = await tier.client('a')
    const b = await tier.client('b')
    await a.mkdir('/v1')
    await tier.barrier('mdt0')
    await a.write('/v1/two')
    const one = await b.write('/v1/one')
    await a.die()
    await tier.failover('mdt0')
    const { view, ms } = await timedRecovery(tier)
    console.log(`recovery with a dead client: ${ms} ms (${JSON.stringify(view)})`)
    expect(stateOf(view, a)).toBe('evicted')
    expect(stateOf(view, b)).toBe('recovered')
    expect(await b.names('/v1')).toEqual(['one'])
    expect(await b.fid('/v1/one')).toBe(one.fid)
    expect(b.evictedBy(MDT)).toBe(false)
  })

  it("three clients, one dead: the other two's interleaved creates are all kept", async () => {
    const tier = await up()
    const [a, b, c] = [await tier.client('a'), await tier.client('b'), await tier.client('c')]
    await a.mkdir('/d3')
    await tier.barrier('mdt0')
    const kept: string[] = []
    await interleaved([a, b, c], 5, async (x, i) => {
      await x.write(`/d3/${x.name}${i}`)
      if (x !== a) kept.push(`${x.name}${i}`)
    })
    await a.die()
    await tier.failover('mdt0')
    const view = await tier.recovered('mdt0')
    console.log(`three clients, one dead: ${JSON.stringify(view)}`)
    expect(view.evicted_clients).toBe(1)
    expect(await tier.fresh((v) => v.names('/d3'))).toEqual(kept.sort())
    expect(b.evictedBy(MDT) || c.evictedBy(MDT)).toBe(false)
  })
})

describe('version-based recovery: replays that depend on lost work', () => {
  it("a replay that depends on the dead client's lost create fails and evicts only its own client", async () => {
    const tier = await up()
    const [a, b, c] = [await tier.client('a'), await tier.client('b'), await tier.client('c')]
    await a.mkdir('/dep')
    await tier.barrier('mdt0')
    await a.write('/dep/x')
    await b.unlink('/dep/x')
    await c.write('/dep/mine')
    await a.die()
    await tier.failover('mdt0')
    const view = await tier.recovered('mdt0')
    console.log(`a dependent replay: ${JSON.stringify(view)}`)
    expect(stateOf(view, a)).toBe('evicted')
    expect(stateOf(view, b)).toBe('evicted')
    expect(stateOf(view, c)).toBe('recovered')
    expect(b.evictedBy(MDT)).toBe(true)
    expect(c.evictedBy(MDT)).toBe(false)
    expect(await tier.fresh((v) => v.names('/dep'))).toEqual(['mine'])
  })

  it('a replayed unlink never removes another inode of the same name', async () => {
    const tier = await up()
    const a = await tier.client('a')
    const b = await tier.client('b')
    await a.mkdir('/u')
    const keep = randomBytes(8 * KiB)
    const old = await a.write('/u/x', keep)
    await tier.barrier('mdt0')
    // a replaces x by a new file (lost with a); b removes that new one.
    await a.unlink('/u/x')
    await a.write('/u/x')
    await b.unlink('/u/x')
    await a.die()
    await tier.failover('mdt0')
    await tier.recoveryUntil('mdt0', (v) => stateOf(v, b) === 'replaying' && v.queued_requests === 1, "b's unlink to wait behind a's lost transnos")
    await tier.admin('mdt0', { cmd: 'evict', client: a.uuid })
    const view = await tier.recovered('mdt0')
    console.log(`an unlink of a name that now names another inode: ${JSON.stringify(view)}`)
    const seen = await tier.fresh(async (v) => ({ fid: await v.fid('/u/x'), data: await v.read('/u/x') }))
    expect(seen.fid).toBe(old.fid)
    expect(seen.data.equals(keep)).toBe(true)
    expect(stateOf(view, b)).toBe('evicted')
  })

  it("a client dies with the OSS: the survivor's writes are kept and it is not evicted", async () => {
    const tier = await up()
    const a = await tier.client('a')
    const b = await tier.client('b')
    await a.mkdir('/o')
    await a.write('/o/a', randomBytes(16 * KiB))
    const want = randomBytes(48 * KiB)
    await b.write('/o/b', want.subarray(0, 16 * KiB))
    await tier.barrier('ost1')
    await a.pwrite('/o/a', randomBytes(16 * KiB), 16 * KiB)
    await b.pwrite('/o/b', want.subarray(16 * KiB, 32 * KiB), 16 * KiB)
    await a.pwrite('/o/a', randomBytes(16 * KiB), 32 * KiB)
    await b.pwrite('/o/b', want.subarray(32 * KiB), 32 * KiB)
    await a.die()
    await tier.failover('ost1')
    const view = await tier.recovered('ost1')
    console.log(`a client dead with the OSS: ${JSON.stringify(view)}`)
    expect(stateOf(view, a)).toBe('evicted')
    expect(stateOf(view, b)).toBe('recovered')
    expect(b.evictedBy(OST)).toBe(false)
    expect((await tier.fresh((v) => v.read('/o/b'))).equals(want)).toBe(true)
  })
})

describe('barriers on the MDT and the OST at once', () => {
  it('interleaved creates, writes, a rename and an unlink of two clients survive the MDS and the OSS failing together, byte for byte', async () => {
    const tier = await up()
    const a = await tier.client('a')
    const b = await tier.client('b')
    await a.mkdir('/w')
    await tier.barrier('mdt0')
    await tier.barrier('ost1')
    const want = new Map<string, Buffer>()
    await interleaved([a, b], 4, async (c, i) => {
      const data = randomBytes(40 * KiB + i * 37 * KiB + (c === a ? 1 : 4099))
      await c.write(`/w/${c.name}${i}`, data)
      want.set(`/w/${c.name}${i}`, data)
    })
    // Each changes a file of the other's.
    await b.rename('/w/a0', '/w/a0-moved')
    want.set('/w/a0-moved', want.get('/w/a0')!)
    want.delete('/w/a0')
    await a.unlink('/w/b1')
    want.delete('/w/b1')
    await Promise.all([tier.failover('mdt0'), tier.failover('ost1')])
    await Promise.all([tier.recovered('mdt0'), tier.recovered('ost1')])
    const got = await tier.fresh((v) => v.tree('/w'))
    expect([...got.keys()].sort()).toEqual([...want.keys()].sort())
    for (const [p, data] of want) expect(got.get(p)!.equals(data), p).toBe(true)
    expect(a.evictions()).toEqual([])
    expect(b.evictions()).toEqual([])
  })
})

describe('a failover during recovery', () => {
  /** Two live clients' creates and writes behind barriers, and a client that dies and so holds recovery open. */
  async function work(tier: Tier, osts: boolean) {
    const a = await tier.client('a')
    const b = await tier.client('b')
    const dead = await tier.client('dead')
    await a.mkdir('/r')
    await tier.barrier('mdt0')
    if (osts) await tier.barrier('ost1')
    const want = new Map<string, Buffer>()
    const fids = new Map<string, number>()
    await interleaved([a, b], 4, async (c, i) => {
      const data = randomBytes(osts ? 24 * KiB + i * 5000 : 0)
      fids.set(`/r/${c.name}${i}`, (await c.write(`/r/${c.name}${i}`, data)).fid)
      want.set(`/r/${c.name}${i}`, data)
    })
    await dead.die()
    return { a, b, dead, want, fids }
  }

  it('the OSS fails while the MDT recovers: both recover, every byte is there', async () => {
    const tier = await up()
    const { a, b, dead, want } = await work(tier, true)
    await tier.failover('mdt0')
    // The live clients replayed; the MDT waits for the dead one until its window ends.
    await tier.recoveryUntil('mdt0', (v) => stateOf(v, a) === 'recovered' && stateOf(v, b) === 'recovered', 'the live clients to replay')
    await tier.failover('ost1')
    expect(stateOf(await tier.recoveryStatus('mdt0'), dead)).toBe('waiting')
    await Promise.all([tier.recovered('mdt0'), tier.recovered('ost1')])
    const got = await tier.fresh((v) => v.tree('/r'))
    expect([...got.keys()].sort()).toEqual([...want.keys()].sort())
    for (const [p, data] of want) expect(got.get(p)!.equals(data), p).toBe(true)
    expect(a.evictions()).toEqual([])
    expect(b.evictions()).toEqual([])
  })

  it('the MDT fails again while it recovers: the clients replay to the third instance, every name with its FID', async () => {
    const tier = await up()
    const { a, b, dead, fids } = await work(tier, false)
    await tier.failover('mdt0')
    await tier.recoveryUntil('mdt0', (v) => stateOf(v, a) === 'recovered' && stateOf(v, b) === 'recovered', 'the live clients to replay')
    expect(stateOf(await tier.recoveryStatus('mdt0'), dead)).toBe('waiting')
    const back = await tier.failover('mdt0')
    expect(back.nid).toBe(tier.nid('mds1'))
    const view = await tier.recovered('mdt0')
    expect(stateOf(view, a)).toBe('recovered')
    expect(stateOf(view, b)).toBe('recovered')
    const seen = await tier.fresh(async (v) => Object.fromEntries(await Promise.all((await v.names('/r')).map(async (n) => [`/r/${n}`, await v.fid(`/r/${n}`)]))))
    expect(seen).toEqual(Object.fromEntries(fids))
    expect(a.evictedBy(MDT) || b.evictedBy(MDT)).toBe(false)
  })
})

describe('eviction during replay', () => {
  it('the evicted client gets EIO for what it had queued and loses what it had not replayed; the other keeps its work', async () => {
    const tier = await up()
    const b = await tier.client('b')
    const c = await tier.client('c')
    await b.mkdir('/e')
    await tier.barrier('mdt0')
    await interleaved([b, c], 2, async (x, i) => void (await x.write(`/e/${x.name}${i}`)))
    // c is cut off: b replays b0, then waits for c0.
    c.hold()
    await tier.failover('mdt0')
    await tier.recoveryUntil('mdt0', (v) => stateOf(v, b) === 'replaying' && v.queued_requests === 1, "b's replay of b1 to wait for c's")
    const late = b.write('/e/late').then(
      () => 'created',
      (e: Error & { code?: string }) => e.code,
    )
    await tier.admin('mdt0', { cmd: 'evict', client: b.uuid })
    c.release()
    const view = await tier.recovered('mdt0')
    expect(stateOf(view, c)).toBe('recovered')
    expect(await late).toBe('EIO')
    expect(b.evictedBy(MDT)).toBe(true)
    expect(c.evictedBy(MDT)).toBe(false)
    const names = await tier.fresh((v) => v.names('/e'))
    expect(names).toEqual(expect.arrayContaining(['c0', 'c1']))
    expect(names).not.toContain('b1')
    expect(names).not.toContain('late')
    // b goes on working after its eviction.
    await b.write('/e/after')
    expect(await c.names('/e')).toContain('after')
  })
})

describe('abort_recovery while clients replay', () => {
  it('every client not done is evicted and gets EIO for what it had queued; both work again after', async () => {
    const tier = await up()
    const b = await tier.client('b')
    const c = await tier.client('c')
    await b.mkdir('/ab')
    await tier.barrier('mdt0')
    await interleaved([b, c], 2, async (x, i) => void (await x.write(`/ab/${x.name}${i}`)))
    c.hold()
    await tier.failover('mdt0')
    await tier.recoveryUntil('mdt0', (v) => stateOf(v, b) === 'replaying' && v.queued_requests === 1, "b's replay of b1 to wait for c's")
    const late = b.write('/ab/late').then(
      () => 'created',
      (e: Error & { code?: string }) => e.code,
    )
    await tier.admin('mdt0', { cmd: 'abort_recovery' })
    c.release()
    const view = await tier.recovered('mdt0')
    expect(stateOf(view, b)).toBe('evicted')
    expect(stateOf(view, c)).toBe('evicted')
    expect(await late).toBe('EIO')
    // c learns it when it reconnects.
    await vi.waitFor(() => expect(c.evictedBy(MDT)).toBe(true), { timeout: 20_000, interval: 50 })
    const lost = await tier.fresh((v) => v.names('/ab'))
    for (const n of ['b1', 'c0', 'c1', 'late']) expect(lost).not.toContain(n)
    await b.write('/ab/b-after')
    await c.write('/ab/c-after')
    expect(await tier.fresh((v) => v.names('/ab'))).toEqual(expect.arrayContaining(['b-after', 'c-after']))
  })
})

describe('a create lost with a dead client', () => {
  it('a new file is empty, never takes the lost FID, and no object of the lost file is left on the OST', async () => {
    const tier = await up()
    const a = await tier.client('a')
    const b = await tier.client('b')
    await a.mkdir('/n')
    await tier.barrier('mdt0')
    const lost = await a.write('/n/lost', randomBytes(1024 * KiB))
    // The OST (no barrier) commits the bytes; the MDT create dies with the barrier.
    await vi.waitFor(
      async () => {
        const s = await tier.targetStatus('ost1')
        expect(s.last_committed).toBe(s.last_transno)
      },
      { timeout: 20_000, interval: 50 },
    )
    const objectsOf = (all: string[], fid: number) => all.filter((p) => new RegExp(`^${fid}(\\D|$)`).test(path.basename(p)))
    expect(objectsOf(await tier.ostObjects(), lost.fid)).not.toEqual([])
    await a.die()
    await tier.failover('mdt0')
    await tier.recovered('mdt0')
    const fresh = await b.write('/n/new')
    expect(fresh.fid).not.toBe(lost.fid)
    const seen = await tier.fresh(async (v) => ({ names: await v.names('/n'), size: (await v.stat('/n/new')).size, data: await v.read('/n/new') }))
    expect(seen).toEqual({ names: ['new'], size: 0, data: Buffer.alloc(0) })
    // Orphan cleanup runs after recovery, asynchronously.
    await vi.waitFor(async () => expect(objectsOf(await tier.ostObjects(), lost.fid)).toEqual([]), { timeout: 20_000, interval: 100 })
  })
})
