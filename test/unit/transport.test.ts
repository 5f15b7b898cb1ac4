/**
 * The undici transport's connections (src/ptlrpc/transport.ts) against an in-process HTTP
 * peer on this file's own loopback address (127.0.83.1:28301) that answers pings at once and
 * holds writes until told: a full window of bulk never delays a control RPC, and a reset of
 * one import's connections leaves another import's requests to the same node alone.
 */
import { EventEmitter, once } from 'node:events'
import http from 'node:http'
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest'
import { encodeFrame, encodeReplyHeader, decodeReqHeader, type ReqHeader } from '../../src/protocol/wire.js'
import { Transport, TransportError, type Route } from '../../src/ptlrpc/transport.js'

// Nothing here waits for a timer: a test that takes seconds is stuck behind a held request.
vi.setConfig({ testTimeout: 5_000 })

const HOST = '127.0.83.1'
const PORT = 28301
const NID = `${HOST}@tcp`

let server: http.Server
const held: Array<{ h: ReqHeader; answer: () => void }> = []
const arrivals = new EventEmitter()

function reply(res: http.ServerResponse): void {
  const body = Buffer.concat(encodeFrame({}))
  res.writeHead(200, { ...encodeReplyHeader({ status: 0, transno: 0, lastCommitted: 0, flags: [] }), 'content-type': 'application/x-lproxy', 'content-length': String(body.length) })
  res.end(body)
}

beforeAll(async () => {
  server = http.createServer((req, res) => {
    req.resume()
    req.on('end', () => {
      const h = decodeReqHeader(req.headers)
      if (h.op === 'ping') return reply(res)
      held.push({ h, answer: () => reply(res) })
      arrivals.emit('held')
    })
  })
  server.listen(PORT, HOST)
  await once(server, 'listening')
})

afterAll(async () => {
  server.closeAllConnections()
  server.close()
})

const header = (op: string, xid: number): ReqHeader => ({ target: 'spfs-OST0001', op, client: 'c', connCnt: 1, xid, lastXid: 0, flags: [] })

async function heldCount(n: number): Promise<void> {
  while (held.length < n) await once(arrivals, 'held')
}

describe('Transport connections', () => {
  it('a ping on the control lane is answered while every io connection carries a write the peer holds', async () => {
    const t = new Transport({ port: PORT, connections: 2 })
    const io: Route = { owner: 'spfs-OST0001-osc-x', lane: 'io' }
    const ac = new AbortController()
    const writes = [1, 2, 3].map((x) => t.send(NID, header('ost_write', x), { a: {} }, Buffer.alloc(1 << 20), ac.signal, io))
    await heldCount(2)
    // Both io connections are busy, the third write queues in the pool; the ping does not.
    const ping = await t.send(NID, header('ping', 4), { a: {} }, undefined, ac.signal, { ...io, lane: 'ctl' })
    expect(ping.header.status).toBe(0)
    expect(held.map((x) => x.h.xid)).toEqual([1, 2])
    for (const x of held.splice(0)) x.answer()
    await heldCount(1)
    held.splice(0)[0]!.answer()
    expect((await Promise.all(writes)).map((r) => r.header.status)).toEqual([0, 0, 0])
    await t.close()
  })

  it("a reset of one import's connections to a node fails only that import's requests", async () => {
    const t = new Transport({ port: PORT })
    const signal = new AbortController().signal
    const x = t.send(NID, header('ost_getattr', 10), { a: {} }, undefined, signal, { owner: 'spfs-OST0002-osc-x', lane: 'io' })
    const y = t.send(NID, header('ost_getattr', 11), { a: {} }, undefined, signal, { owner: 'spfs-OST0001-osc-x', lane: 'io' })
    await heldCount(2)
    t.reset(NID, 'spfs-OST0001-osc-x')
    await expect(y).rejects.toBeInstanceOf(TransportError)
    for (const h of held.splice(0)) h.answer()
    expect((await x).header.status).toBe(0)
    await t.close()
  })
})
