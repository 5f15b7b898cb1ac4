/**
 * The transport's connections (src/ptlrpc/transport.ts), on both LNDs: `@tcp` NIDs (binary
 * messages) and `@http` NIDs (undici), against a node front in this process on this file's
 * own loopback address (127.0.83.1:28301) serving a stand-in target that answers pings at
 * once and holds writes until told: a full window of bulk never delays a control RPC, and a
 * reset of one import's connections leaves another import's requests to the same node alone.
 */
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest'
import type { ReqHeader } from '../../src/protocol/wire.js'
import { Transport, TransportError, type Route } from '../../src/ptlrpc/transport.js'
import { StandIn, STANDIN_TARGET } from '../helpers/standin.js'

// Nothing here waits for a timer: a test that takes seconds is stuck behind a held request.
vi.setConfig({ testTimeout: 5_000 })

const HOST = '127.0.83.1'
const PORT = 28301

const peer = new StandIn()
beforeAll(() => peer.listen(HOST, PORT))
afterAll(() => peer.close())

const header = (op: string, xid: number): ReqHeader => ({ target: STANDIN_TARGET, op, client: 'c', connCnt: 1, xid, lastXid: 0, flags: [] })
const write = { fid: 1, stripe: 0, offset: 0 }

describe.each(['tcp', 'http'] as const)('Transport connections on @%s NIDs', (net) => {
  const NID = `${HOST}@${net}`

  it('a ping on the control lane is answered while every io connection carries a write the peer holds', async () => {
    const t = new Transport({ port: PORT, connections: 2 })
    const io: Route = { owner: 'spfs-OST0001-osc-x', lane: 'io' }
    const ac = new AbortController()
    const writes = [1, 2, 3].map((x) => t.send(NID, header('ost_write', x), { a: write }, Buffer.alloc(1 << 20), ac.signal, io))
    // HTTP: both io connections are busy and the third write queues in the pool; tcp: all three share them.
    await peer.heldCount(net === 'http' ? 2 : 3)
    const ping = await t.send(NID, header('ping', 4), { a: {} }, undefined, ac.signal, { ...io, lane: 'ctl' })
    expect(ping.header.status).toBe(0)
    expect(peer.held.every((x) => x.h.op === 'ost_write')).toBe(true)
    peer.release()
    if (net === 'http') {
      await peer.heldCount(1)
      peer.release()
    }
    expect((await Promise.all(writes)).map((r) => r.body)).toEqual([{ xid: 1 }, { xid: 2 }, { xid: 3 }])
    await t.close()
  })

  it("a reset of one import's connections to a node fails only that import's requests", async () => {
    const t = new Transport({ port: PORT })
    const signal = new AbortController().signal
    const args = { objects: [{ fid: 1, stripe: 0 }] }
    const x = t.send(NID, header('ost_getattr', 10), { a: args }, undefined, signal, { owner: 'spfs-OST0002-osc-x', lane: 'io' })
    const y = t.send(NID, header('ost_getattr', 11), { a: args }, undefined, signal, { owner: 'spfs-OST0001-osc-x', lane: 'io' })
    await peer.heldCount(2)
    t.reset(NID, 'spfs-OST0001-osc-x')
    await expect(y).rejects.toMatchObject({ kind: 'conn' })
    await expect(y).rejects.toBeInstanceOf(TransportError)
    peer.release()
    expect((await x).body).toEqual({ xid: 10 })
    await t.close()
  })
})
