import { describe, it, expect, afterAll, afterEach } from 'vitest'
import { ManualClock } from '../../src/common/clock.js'
import { CloseBatcher } from '../../src/mdc/closes.js'
import { MAX_CLOSE_BATCH, OPS, type MdtAttr } from '../../src/protocol/ops.js'
import type { Target } from '../../src/server/target/target.js'
import { tempDir, removeTempDirs } from '../helpers/nodes.js'
import { openTarget, TestClient } from '../helpers/target.js'

afterAll(removeTempDirs)

describe('the client batches its MDT closes', () => {
  function rig(max = 3) {
    const clock = new ManualClock()
    const sent: string[][] = []
    const answers: Array<() => void> = []
    const closes = new CloseBatcher((handles) => (sent.push(handles), new Promise<void>((resolve) => answers.push(resolve))), clock, { max, delayMs: 50 })
    return { clock, sent, answers, closes }
  }

  it('sends the handles released within the delay together, when the delay is up', async () => {
    const { clock, sent, closes } = rig()
    closes.add('a')
    await clock.advance(30)
    closes.add('b')
    expect(sent).toEqual([])
    expect(closes.waiting).toBe(2)
    // The delay runs from the first handle waiting, not the last.
    await clock.advance(20)
    expect(sent).toEqual([['a', 'b']])
    expect(closes.waiting).toBe(0)
    closes.add('c')
    await clock.advance(49)
    expect(sent).toEqual([['a', 'b']])
    await clock.advance(1)
    expect(sent).toEqual([['a', 'b'], ['c']])
  })

  it('sends at once when a batch is full, and leaves no timer behind for it', async () => {
    const { clock, sent, closes } = rig(3)
    for (const h of ['a', 'b', 'c', 'd']) closes.add(h)
    expect(sent).toEqual([['a', 'b', 'c']])
    await clock.advance(50)
    expect(sent).toEqual([['a', 'b', 'c'], ['d']])
    await clock.advance(500)
    expect(sent).toHaveLength(2)
  })

  it('flush sends what waits and settles only once every batch sent is answered (unmount)', async () => {
    const { clock, sent, answers, closes } = rig(2)
    closes.add('a')
    closes.add('b')
    closes.add('c')
    let settled = false
    const done = closes.flush().then(() => (settled = true))
    expect(sent).toEqual([['a', 'b'], ['c']])
    answers[1]!()
    await Promise.resolve()
    await Promise.resolve()
    expect(settled).toBe(false)
    answers[0]!()
    await done
    expect(settled).toBe(true)
    // Nothing was left to go when the delay is up.
    await clock.advance(100)
    expect(sent).toHaveLength(2)
    await closes.flush()
  })

  it('never asks the MDT for more than one mdt_close may carry', () => {
    expect(OPS.mdt_close.args.safeParse({ handles: Array.from({ length: MAX_CLOSE_BATCH }, (_, i) => i.toString(16).padStart(16, '0')) }).success).toBe(true)
    expect(OPS.mdt_close.args.safeParse({ handles: Array.from({ length: MAX_CLOSE_BATCH + 1 }, (_, i) => i.toString(16).padStart(16, '0')) }).success).toBe(false)
    expect(OPS.mdt_close.args.safeParse({ handles: [] }).success).toBe(false)
  })
})

describe("the MDT's batched close", () => {
  const targets: Target[] = []
  afterEach(async () => {
    for (const t of targets.splice(0)) await t.stop(false).catch(() => undefined)
  })

  it("closes the handles the caller holds, passes over a stale one and another client's, and an unlinked file goes with its last close", async () => {
    const { target } = await openTarget({ dir: await tempDir('lp-closes'), kind: 'mdt', clock: new ManualClock() })
    targets.push(target)
    const a = new TestClient(target, 'client-A')
    const b = new TestClient(target, 'client-B')
    await a.connect()
    await b.connect()
    const create = async (c: TestClient, name: string) =>
      (await c.ok<{ attr: MdtAttr; handle: string }>('mdt_create', { parent: 1, name, type: 'reg', mode: 0o644, uid: 0, gid: 0, time: 1, open_flags: 2 })).body
    const f = await create(a, 'f')
    const g = await create(a, 'g')
    const h = await create(b, 'h')
    for (const name of ['f', 'g', 'h']) await a.ok('mdt_unlink', { parent: 1, name, dir: false, time: 2 })
    const exists = async (fid: number) => (await a.call('mdt_getattr', { fid })).status === 0

    // Unlinked, but open: each stays.
    for (const x of [f, g, h]) expect(await exists(x.attr.fid)).toBe(true)
    await a.ok('mdt_close', { handles: [f.handle, 'ffffffffffffffff', h.handle, g.handle] })
    expect(await exists(f.attr.fid)).toBe(false)
    expect(await exists(g.attr.fid)).toBe(false)
    // B's open was not A's to close.
    expect(await exists(h.attr.fid)).toBe(true)
    await b.ok('mdt_close', { handles: [h.handle] })
    expect(await exists(h.attr.fid)).toBe(false)
  })
})
