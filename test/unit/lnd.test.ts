/**
 * What the import relies on from either LND, `@tcp` (binary messages) and `@http` (undici),
 * against peers in this process on this file's own loopback net (127.0.88.x, ports
 * 28800): replies matched to requests with many in flight and answered out of order,
 * a ping not held up by bulk, deadlines by AbortSignal, a dead peer reported as 'conn', a
 * refusal reported alike; a late reply to a request given up on, from a raw peer on 127.0.206.1,
 * not taken for its resend's; an HTTP reply too large or malformed, from a raw peer on 127.0.206.2,
 * refused; and the binary front's answer to malformed frames.
 */
import { once } from 'node:events'
import http from 'node:http'
import net from 'node:net'
import { Readable, pipeline } from 'node:stream'
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest'
import { errnoOf } from '../../src/protocol/errno.js'
import { MAX_IO } from '../../src/protocol/ops.js'
import { MSG_VERSION, MsgReader, REPLY_LIMITS, REQUEST_LIMITS, REQ_FIXED, type ReplyMsg, type RequestMsg, encodeReply, encodeRequest } from '../../src/protocol/msg.js'
import { type ReplyHeader, type ReqHeader, encodeReplyHeader } from '../../src/protocol/wire.js'
import { Transport, TransportError } from '../../src/ptlrpc/transport.js'
import { pollUntil } from '../helpers/poll.js'
import { StandIn, STANDIN_TARGET } from '../helpers/standin.js'

vi.setConfig({ testTimeout: 10_000 })

const PORT = 28800
/** Serves the stand-in target on both transports. */
const PEER = '127.0.88.1'
/** Nothing listens here: connections are refused. */
const DEAD = '127.0.88.2'
/** Answers half a reply, then resets the connection. */
const RST = '127.0.88.3'

const peer = new StandIn()
let rst: net.Server

beforeAll(async () => {
  await peer.listen(PEER, PORT)
  rst = net.createServer((s) => {
    s.once('data', (first: Buffer) => {
      const half = first[0] === 0x9c
        ? Buffer.concat(encodeReply(first.readUInt32BE(20), 200, { status: 0, transno: 0, lastCommitted: 0, flags: [] }, { pad: 'x'.repeat(100) })).subarray(0, 60)
        : Buffer.from('HTTP/1.1 200 OK\r\nx-lp-status: 0\r\ncontent-length: 1000\r\n\r\n0123')
      s.write(half, () => s.resetAndDestroy())
    })
    s.on('error', () => undefined)
  })
  rst.listen(PORT, RST)
  await once(rst, 'listening')
})

afterAll(async () => {
  await peer.close()
  rst.close()
})

let nextXid = 1000
const header = (op: string, target = STANDIN_TARGET): ReqHeader => ({ target, op, client: 'c', connCnt: 1, xid: ++nextXid, lastXid: 0, flags: [] })
const getattr = { a: { objects: [{ fid: 1, stripe: 0 }] } }
/** A signal of its own per request, as an import gives each. */
const never = () => new AbortController().signal

describe.each(['tcp', 'http'] as const)('the @%s LND', (lnd) => {
  const nid = (host: string) => `${host}@${lnd}`

  it('matches replies to requests by xid, with many in flight answered in any order', async () => {
    // One connection on tcp: all twenty share it. HTTP needs one per request.
    const t = new Transport({ port: PORT, connections: lnd === 'tcp' ? 1 : 20 })
    const sent = Array.from({ length: 20 }, () => header('ost_getattr'))
    const replies = sent.map((h) => t.send(nid(PEER), h, getattr, undefined, never()))
    await peer.heldCount(20)
    const order = [7, 19, 0, 3, 12, 1, 18, 5, 9, 2, 16, 4, 11, 6, 15, 8, 14, 10, 17, 13]
    const held = peer.held.splice(0)
    for (const i of order) held.find((x) => x.h.xid === sent[i]!.xid)!.answer()
    expect((await Promise.all(replies)).map((r) => r.body)).toEqual(sent.map((h) => ({ xid: h.xid })))
    await t.close()
  })

  it('answers a ping on the control lane, and takes a small RPC on the io lane, while a 60 MiB write is still on its way', async () => {
    const t = new Transport({ port: PORT })
    const owner = 'spfs-OST0001-osc-x'
    peer.arrived.length = 0
    const size = MAX_IO - 4 * 1024 * 1024
    const w = t.send(nid(PEER), header('ost_write'), { a: { fid: 1, stripe: 0, offset: 0 } }, Buffer.alloc(size, 1), never(), { owner, lane: 'io' })
    const ping = await t.send(nid(PEER), header('ping'), { a: {} }, undefined, never(), { owner, lane: 'ctl' })
    expect(ping.header.status).toBe(0)
    const g = t.send(nid(PEER), header('ost_getattr'), getattr, undefined, never(), { owner, lane: 'io' })
    await peer.heldCount(1)
    // Neither waited for the write's bytes: it had not reached the target yet.
    expect(peer.arrived).toEqual(['ping', 'ost_getattr'])
    await peer.heldCount(2)
    expect(peer.held.map((x) => x.bulk)).toEqual([0, size])
    peer.release()
    await Promise.all([w, g])
    await t.close()
  })

  it("fails a request with 'timeout' when its signal aborts, and the connection serves the next one", async () => {
    const t = new Transport({ port: PORT, connections: 1 })
    const ac = new AbortController()
    const late = t.send(nid(PEER), header('ost_getattr'), getattr, undefined, ac.signal)
    await peer.heldCount(1)
    ac.abort(new Error('deadline of 5 s passed'))
    await expect(late).rejects.toMatchObject({ kind: 'timeout', message: 'deadline of 5 s passed' })
    // Its reply, when it comes, answers nothing; the next request on the connection gets its own.
    peer.release()
    const h = header('ost_getattr')
    const next = t.send(nid(PEER), h, getattr, undefined, never())
    await peer.heldCount(1)
    peer.release()
    expect((await next).body).toEqual({ xid: h.xid })
    await expect(t.send(nid(PEER), header('ping'), { a: {} }, undefined, AbortSignal.abort())).rejects.toMatchObject({ kind: 'timeout' })
    await t.close()
  })

  it("refuses a request once closed, as 'conn', whether it had carried one before or not (the @http LND is loaded at its first)", async () => {
    for (const used of [false, true]) {
      const t = new Transport({ port: PORT })
      if (used) expect((await t.send(nid(PEER), header('ping'), { a: {} }, undefined, never())).header.status).toBe(0)
      await t.close()
      await expect(t.send(nid(PEER), header('ping'), { a: {} }, undefined, never())).rejects.toMatchObject({ kind: 'conn', message: 'transport closed' })
    }
  })

  it("reports a refused connection and a reset in the middle of a reply as 'conn'", async () => {
    const t = new Transport({ port: PORT })
    const refused = t.send(nid(DEAD), header('ping'), { a: {} }, undefined, never())
    await expect(refused).rejects.toBeInstanceOf(TransportError)
    await expect(refused).rejects.toMatchObject({ kind: 'conn', message: expect.stringMatching(/ECONNREFUSED/) })
    await expect(t.send(nid(RST), header('ping'), { a: {} }, undefined, never())).rejects.toMatchObject({ kind: 'conn' })
    await t.close()
  })

  it("reports a peer's refusal alike: 'refused', with the verdict code and the errno", async () => {
    const t = new Transport({ port: PORT })
    await expect(t.send(nid(PEER), header('ping', 'spfs-OST0009'), { a: {} }, undefined, never())).rejects.toMatchObject({
      kind: 'refused',
      code: 404,
      status: -errnoOf('ENODEV'),
      message: "target 'spfs-OST0009' is not served by this node",
    })
    await expect(t.send(nid(PEER), header('ost_getattr'), { a: { objects: [] } }, undefined, never())).rejects.toMatchObject({
      kind: 'refused',
      code: 400,
      status: -errnoOf('EINVAL'),
      message: expect.stringMatching(/^invalid arguments for ost_getattr/),
    })
    await expect(t.send(nid(PEER), { ...header('ping'), client: 'a/b' }, { a: {} }, undefined, never())).rejects.toMatchObject({ kind: 'refused', code: 400, status: -errnoOf('EPROTO') })
    // The node is alive and the connection still works.
    expect((await t.send(nid(PEER), header('ping'), { a: {} }, undefined, never())).header.status).toBe(0)
    await t.close()
  })
})

describe("the binary front's answer to a malformed frame", () => {
  /** Connect to the front, send `bytes`, and collect the replies until the front closes the connection. */
  async function exchange(bytes: Buffer): Promise<ReplyMsg[]> {
    const s = net.connect(PORT, PEER)
    const reader = new MsgReader('reply', REPLY_LIMITS)
    const out: ReplyMsg[] = []
    s.on('data', (c: Buffer) => reader.push(c, (m) => out.push(m as ReplyMsg)))
    s.write(bytes)
    await once(s, 'close')
    return out
  }
  const ok = (h: ReqHeader) => Buffer.concat(encodeRequest(h, { a: {} }))

  it('answers a frame with a bad magic with EPROTO and closes, after answering the good one before it', async () => {
    const good = header('ping')
    const junk = Buffer.alloc(REQ_FIXED, 0x9c)
    const replies = await exchange(Buffer.concat([ok(good), junk]))
    expect(replies.map((r) => [r.xid, r.code, r.header.status])).toEqual([
      [good.xid, 200, 0],
      [0, 400, -errnoOf('EPROTO')],
    ])
    expect(replies[1]!.header.error).toMatch(/bad magic/)
  })

  it('refuses an oversize frame on its header, naming its xid, without waiting for the body', async () => {
    const h = header('ost_write')
    const head = ok(h).subarray(0, REQ_FIXED)
    head.writeUInt32BE(MAX_IO + 1, 12)
    const replies = await exchange(head)
    expect(replies.map((r) => [r.xid, r.code, r.header.status])).toEqual([[h.xid, 400, -errnoOf('EPROTO')]])
    expect(replies[0]!.header.error).toMatch(/bulk of \d+ bytes exceeds/)
  })

  it('closes, when the node does, connections that said nothing yet or stopped mid-frame', async () => {
    const quiet = '127.0.88.4'
    const p = new StandIn()
    await p.listen(quiet, PORT)
    const silent = net.connect(PORT, quiet)
    const midway = net.connect(PORT, quiet)
    for (const s of [silent, midway]) s.on('error', () => undefined)
    await Promise.all([once(silent, 'connect'), once(midway, 'connect')])
    midway.write(ok(header('ping')).subarray(0, 10))
    // (events.once would reject on the reset's 'error'.)
    const closed = Promise.all([silent, midway].map((s) => new Promise((resolve) => s.once('close', resolve))))
    await p.close()
    await closed
  })

  it('answers a frame of another version with an error and closes', async () => {
    const bytes = ok(header('ping'))
    bytes.writeUInt8(9, 4)
    const replies = await exchange(bytes)
    expect(replies.map((r) => r.header.error)).toEqual([`unsupported message version 9 (this node speaks ${MSG_VERSION})`])
  })
})

describe('the @tcp LND after a deadline', () => {
  /** Holds the first request of an xid; when the resend comes, answers the original late, then the resend. */
  const LATE = '127.0.206.1'
  const ok: ReplyHeader = { status: 0, transno: 0, lastCommitted: 0, flags: [] }
  let late: net.Server
  const held = new Map<number, net.Socket>()
  const conns = new Set<net.Socket>()

  beforeAll(async () => {
    late = net.createServer((s) => {
      conns.add(s)
      s.on('error', () => undefined)
      const reader = new MsgReader('request', REQUEST_LIMITS)
      s.on('data', (c: Buffer) =>
        reader.push(c, (m) => {
          const { xid } = (m as RequestMsg).h
          const first = held.get(xid)
          if (!first) return held.set(xid, s)
          first.write(Buffer.concat(encodeReply(xid, 200, ok, { answer: 'original' })))
          s.write(Buffer.concat(encodeReply(xid, 200, ok, { answer: 'resend' })))
        }),
      )
    })
    late.listen(PORT, LATE)
    await once(late, 'listening')
  })

  afterAll(() => {
    for (const s of conns) s.destroy()
    late.close()
  })

  it("a resend of an xid given up on gets its own reply, not the original's late one; the late one answers nothing", async () => {
    const t = new Transport({ port: PORT, connections: 1 })
    const h = header('ost_getattr')
    const ac = new AbortController()
    const original = t.send(`${LATE}@tcp`, h, getattr, undefined, ac.signal)
    await pollUntil('the original arrived', () => held.has(h.xid))
    ac.abort(new Error('deadline of 5 s passed'))
    await expect(original).rejects.toMatchObject({ kind: 'timeout' })
    const resend = await t.send(`${LATE}@tcp`, { ...h, flags: ['resend'] }, getattr, undefined, never())
    expect(resend.body).toEqual({ answer: 'resend' })
    expect(conns.size).toBe(2)
    // The connection that had the late reply still serves.
    const next = header('ping')
    const again = t.send(`${LATE}@tcp`, next, { a: {} }, undefined, never())
    await pollUntil('the next request arrived', () => held.has(next.xid))
    held.get(next.xid)!.write(Buffer.concat(encodeReply(next.xid, 200, ok, { answer: 'next' })))
    expect((await again).body).toEqual({ answer: 'next' })
    await t.close()
  })
})

describe('the @http LND against a reply too large or malformed', () => {
  const BAD = '127.0.206.2'
  const MiB = 1024 * 1024
  /** The largest frame the TCP LND takes: length word, JSON, bulk. */
  const MAX = 4 + REPLY_LIMITS.json + REPLY_LIMITS.bulk
  const ok = encodeReplyHeader({ status: 0, transno: 0, lastCommitted: 0, flags: [] })
  const piece = Buffer.alloc(MiB)
  let bad: http.Server
  /** What the next request is answered with. */
  let answer: (res: http.ServerResponse) => void

  beforeAll(async () => {
    bad = http.createServer((req, res) => {
      req.resume()
      answer(res)
    })
    bad.listen(PORT, BAD)
    await once(bad, 'listening')
  })

  afterAll(() => {
    bad.closeAllConnections()
    bad.close()
  })

  /** `total` bytes of body as the client takes them; resolves whether all of it was written before the client went. */
  function pour(res: http.ServerResponse, total: number): Promise<boolean> {
    function* pieces() {
      for (let left = total; left > 0; left -= MiB) yield piece.subarray(0, Math.min(MiB, left))
    }
    return new Promise((resolve) => pipeline(Readable.from(pieces()), res, (err) => resolve(!err)))
  }

  it.each([
    ['chunked, past the limit', undefined, MAX + 16 * MiB],
    ['with a content-length past the limit', MAX + 1, MAX + 1],
  ])('refuses a body %s before it is all sent, as a protocol violation', async (_what, length, total) => {
    let whole!: Promise<boolean>
    answer = (res) => {
      res.writeHead(200, { ...ok, ...(length === undefined ? {} : { 'content-length': String(length) }) })
      whole = pour(res, total)
    }
    const t = new Transport({ port: PORT })
    const sent = t.send(`${BAD}@http`, header('ost_read'), { a: {} }, undefined, never())
    await expect(sent).rejects.toBeInstanceOf(TransportError)
    await expect(sent).rejects.toMatchObject({ kind: 'conn', message: expect.stringMatching(/^EPROTO: reply body from 127\.0\.206\.2@http/) })
    // The client closed the connection: the peer could not write the whole body.
    expect(await whole).toBe(false)
    await t.close()
  })

  it.each([
    ['shorter than a frame', Buffer.from('xx'), /body too short for a frame/],
    ['with JSON that does not parse', Buffer.concat([Buffer.from([0, 0, 0, 3]), Buffer.from('{{{')]), /JSON does not parse/],
  ])('reports a reply frame %s as a protocol violation', async (_what, body, why) => {
    answer = (res) => res.writeHead(200, ok).end(body)
    const t = new Transport({ port: PORT })
    const h = header('ping')
    const sent = t.send(`${BAD}@http`, h, { a: {} }, undefined, never())
    await expect(sent).rejects.toBeInstanceOf(TransportError)
    await expect(sent).rejects.toMatchObject({ kind: 'conn', message: expect.stringMatching(new RegExp(`^EPROTO: reply ${h.xid} from 127\\.0\\.206\\.2@http: .*${why.source}`)) })
    await t.close()
  })
})
