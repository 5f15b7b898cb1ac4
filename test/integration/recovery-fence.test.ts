/**
 * Fencing by MMP: an OSS that hung (SIGSTOP) while it held acknowledged, uncommitted writes is
 * taken over by its partner; when it runs again it must find the foreign MMP block and stop
 * without writing anything to the target, whose data and journal now belong to the partner.
 */
import { randomBytes } from 'node:crypto'
import { afterEach, describe, expect, it, vi } from 'vitest'
import { Tier } from '../helpers/tier.js'
import type { NodeProc } from '../helpers/nodes.js'

const NET = '127.0.86'
const PORT = 28600
const SIZE = 256 * 1024

let t: Tier | undefined
afterEach(async () => {
  await t?.down()
  t = undefined
}, 60_000)

/** Until the target has committed everything it executed. */
async function allCommitted(tier: Tier): Promise<void> {
  await vi.waitFor(
    async () => {
      const s = await tier.targetStatus('ost1')
      expect(s.last_committed).toBe(s.last_transno)
    },
    { timeout: 20_000, interval: 50 },
  )
}

describe('a hung OSS resumed after takeover', () => {
  it('stops at once and writes nothing: the data and the journal are what the partner committed', async () => {
    const tier = (t = await Tier.up({ net: NET, port: PORT, commitInterval: 1 }))
    const a = await tier.client('a')
    await a.write('/f', randomBytes(SIZE))
    // Hang the OSS right after an acknowledged write, before its commit (if a commit slipped in
    // between, the journal grew: let it run and try again).
    let stale: NodeProc | undefined
    for (let i = 0; i < 5 && !stale; i++) {
      await allCommitted(tier)
      const before = await tier.journalBytes('ost1')
      await a.pwrite('/f', randomBytes(SIZE))
      const n = tier.hang('ost1')
      if ((await tier.journalBytes('ost1')) === before) stale = n
      else tier.resume(n)
    }
    expect(stale, 'a write left uncommitted in the hung node').toBeDefined()
    await tier.start('ost1', 'oss2')
    await tier.recovered('ost1')
    const last = randomBytes(SIZE)
    await a.pwrite('/f', last, 0, true)
    tier.resume(stale!)
    // It serves nothing else: once it stopped the target, the process exits.
    await vi.waitFor(() => expect(stale!.alive).toBe(false), { timeout: 20_000, interval: 50 })
    expect((await tier.fresh((v) => v.read('/f'))).equals(last)).toBe(true)
    // What is on disk, as a node that starts from it sees it.
    await tier.stop('ost1')
    await tier.start('ost1', 'oss1')
    await tier.recovered('ost1')
    expect((await tier.fresh((v) => v.read('/f'))).equals(last)).toBe(true)
  })
})
