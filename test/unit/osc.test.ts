/**
 * The OSC's unstable-bytes budget (src/osc/osc.ts) against a fake target (test/helpers/fakepeer.ts)
 * that commits nothing, as under a replay barrier: a writer past the budget waits, and the
 * import's close ends the wait.
 */
import { describe, expect, it, vi } from 'vitest'
import { ManualClock } from '../../src/common/clock.js'
import { silentLogger } from '../../src/common/log.js'
import { Osc } from '../../src/osc/osc.js'
import { PtlrpcClient } from '../../src/ptlrpc/client.js'
import { Import } from '../../src/ptlrpc/import.js'
import { FakeNet, FakeTarget } from '../helpers/fakepeer.js'

// Nothing here waits for real time.
vi.setConfig({ testTimeout: 5_000 })

const NID = 'oss1@tcp'

describe('Osc unstable-bytes throttle', () => {
  it('a write waiting for a commit that never comes fails with EIO once the import is closed', async () => {
    const clock = new ManualClock()
    const net = new FakeNet(clock)
    const target = new FakeTarget()
    net.node(NID).up(target)
    const client = new PtlrpcClient(clock, silentLogger, 988, { uuid: 'client-1', transport: net })
    const imp = new Import({ client, target: target.name, name: `${target.name}-osc-test`, nids: [NID], log: silentLogger })
    const osc = new Osc(1, imp, { maxUnstableBytes: 4096 })
    imp.connect()
    await clock.advance(0)
    expect(imp.state).toBe('FULL')

    await osc.write(1, 0, 0, Buffer.alloc(4096, 1), 0)
    expect(imp.keptBytes).toBe(4096)
    let outcome: unknown = 'pending'
    osc.write(1, 0, 4096, Buffer.alloc(4096, 2), 0).then(
      () => (outcome = 'written'),
      (e: unknown) => (outcome = e),
    )
    await clock.advance(1000)
    // The sync was answered, nothing was committed: the writer waits.
    expect(net.ops('sync')).toHaveLength(1)
    expect(outcome).toBe('pending')

    await imp.close()
    await clock.advance(0)
    expect(outcome).toMatchObject({ code: 'EIO', message: `${target.name}: import is CLOSED` })
    expect(net.ops('ost_write')).toHaveLength(1)
    expect(imp.listenerCount('committed') + imp.listenerCount('state')).toBe(0)
  })
})
