/**
 * The front's bounds (src/server/limits.ts) held against misbehaving peers, in-process with
 * scaled-down caps and deadlines: connections past the caps per peer and per node refused at
 * once (and logged once), well-behaved peers still served; requests in flight per export
 * capped; a trickled head or body (slowloris) dropped by its deadline, idle connections closed.
 * Peers are told apart by their source address (127.0.106.x, all local).
 */
import { describe, it, expect, afterEach } from 'vitest'
import net from 'node:net'
import { once } from 'node:events'
import { captureLogger } from '../helpers/log.js'
import { MsgReader, REPLY_LIMITS, type ReplyMsg, encodeRequest } from '../../src/protocol/msg.js'
import type { ReqHeader } from '../../src/protocol/wire.js'
import { createFront, type Front } from '../../src/server/front.js'
import type { FrontLimits } from '../../src/server/limits.js'
import type { TargetReply } from '../../src/server/target/target.js'
import { pollUntil } from '../helpers/poll.js'

const HOST = '127.0.105.1'
const TARGET = 'spfs-OST0001'
let port = 30500

/** A raw connection from `local`: what it received, and when it closed. */
class Peer {
  readonly sock: net.Socket
  readonly closed: Promise<number>
  private readonly chunks: Buffer[] = []

  constructor(p: number, local: string) {
    this.sock = net.connect({ host: HOST, port: p, localAddress: local })
    this.sock.on('data', (c: Buffer) => this.chunks.push(c))
    this.sock.on('error', () => undefined)
    this.closed = once(this.sock, 'close').then(() => performance.now())
  }

  async ready(): Promise<this> {
    if (this.sock.connecting) await once(this.sock, 'connect')
    return this
  }

  get text(): string {
    return Buffer.concat(this.chunks).toString('latin1')
  }

  /** Binary replies received so far. */
  replies(): ReplyMsg[] {
    const out: ReplyMsg[] = []
    new MsgReader('reply', REPLY_LIMITS).push(Buffer.concat(this.chunks), (m) => void out.push(m as ReplyMsg))
    return out
  }

  async repliesAtLeast(n: number, ms = 5000): Promise<ReplyMsg[]> {
    const end = performance.now() + ms
    while (this.replies().length < n) {
      if (performance.now() > end) throw new Error(`${this.replies().length} replies, expected ${n}`)
      await new Promise((r) => setTimeout(r, 10))
    }
    return this.replies()
  }

  /** Resolves with true if the server closed the connection within ms. */
  closedWithin(ms: number): Promise<boolean> {
    return Promise.race([this.closed.then(() => true), new Promise<boolean>((r) => setTimeout(() => r(false), ms))])
  }
}

const header = (client: string, xid: number, op = 'statfs'): ReqHeader => ({ target: TARGET, op, client, connCnt: 1, xid, lastXid: 0, flags: [] })
const request = (client: string, xid: number, op = 'statfs') => Buffer.concat(encodeRequest(header(client, xid, op), { a: {} }))

function httpRequest(client: string, xid: number, body = Buffer.from('\0\0\0\x08{"a":{}}')): string {
  const h = `POST /rpc HTTP/1.1\r\nhost: x\r\nx-lp-target: ${TARGET}\r\nx-lp-op: statfs\r\nx-lp-client: ${client}\r\nx-lp-conn-cnt: 1\r\nx-lp-xid: ${xid}\r\nx-lp-last-xid: 0\r\ncontent-length: ${body.length}\r\n\r\n`
  return h + body.toString('latin1')
}

/** A front serving one stand-in OST that holds statfs until released and answers ping at once. */
function serve(limits: Partial<FrontLimits>) {
  const held: Array<() => void> = []
  const cap = captureLogger('warn')
  const handle = (h: ReqHeader) =>
    new Promise<TargetReply>((resolve) => {
      const answer = () => resolve({ http: 200, status: 0, transno: 0, lastCommitted: 0, flags: [], body: { xid: h.xid } })
      if (h.op === 'ping') answer()
      else held.push(answer)
    })
  const front = createFront(new Map([[TARGET, { kind: 'ost' as const, handle }]]), cap.log, { limits })
  const p = port++
  fronts.push(front)
  const listening = new Promise<void>((resolve) => front.server.listen(p, HOST, resolve))
  const conns = () => new Promise<number>((resolve, reject) => front.server.getConnections((e, n) => (e ? reject(e) : resolve(n))))
  return { front, port: p, held, log: cap, listening, conns, release: () => held.splice(0).forEach((a) => a()) }
}

const fronts: Front[] = []
const peers: Peer[] = []
afterEach(async () => {
  for (const p of peers.splice(0)) p.sock.destroy()
  await Promise.all(fronts.splice(0).map((f) => f.close()))
})

async function open(p: number, local: string): Promise<Peer> {
  const peer = new Peer(p, local)
  peers.push(peer)
  return peer.ready()
}

/** Run `fn` while `step` sends a little more every `ms`; the trickle stops however `fn` ends. */
async function trickling(ms: number, step: () => unknown, fn: () => Promise<void>): Promise<void> {
  const timer = setInterval(step, ms)
  try {
    await fn()
  } finally {
    clearInterval(timer)
  }
}

describe('connection caps', () => {
  it('refuse a peer past its cap at once, logged once, while other peers are served on both transports', async () => {
    const s = serve({ maxConnsPerPeer: 4, maxConns: 8 })
    await s.listening
    const a = await Promise.all([1, 2, 3, 4].map(() => open(s.port, '127.0.106.1')))
    await pollUntil('4 connections counted', async () => (await s.conns()) === 4)
    const over = await Promise.all([1, 2, 3].map(() => open(s.port, '127.0.106.1')))
    for (const o of over) expect(await o.closedWithin(2000)).toBe(true)
    expect(over.every((o) => o.text === '')).toBe(true)
    const lines = s.log.messages().filter((m) => m.startsWith('refusing connections from 127.0.106.1'))
    expect(lines).toEqual(['refusing connections from 127.0.106.1: 127.0.106.1 holds 4 connections (cap 4); 1 refused in the last 60 s'])

    // Another peer is served, over tcp and over HTTP; the peer at its cap is too, on a connection it holds.
    const b = await open(s.port, '127.0.106.2')
    b.sock.write(request('b', 1, 'ping'))
    expect((await b.repliesAtLeast(1))[0]).toMatchObject({ code: 200, header: { status: 0 } })
    const bh = await open(s.port, '127.0.106.2')
    bh.sock.write(httpRequest('b', 2).replace('statfs', 'ping'))
    await pollUntil('HTTP reply', () => bh.text.startsWith('HTTP/1.1 200'))
    a[0]!.sock.write(request('a', 1, 'ping'))
    expect((await a[0]!.repliesAtLeast(1))[0]).toMatchObject({ code: 200 })

    // Once the first peer closes some, it may open again.
    a[1]!.sock.destroy()
    await pollUntil('a slot freed', async () => (await s.conns()) === 5)
    const again = await open(s.port, '127.0.106.1')
    again.sock.write(request('a', 2, 'ping'))
    expect((await again.repliesAtLeast(1))[0]).toMatchObject({ code: 200 })
  })

  it('refuse any peer past the node cap, until connections close', async () => {
    const s = serve({ maxConnsPerPeer: 100, maxConns: 5 })
    await s.listening
    const held = await Promise.all([1, 2, 3, 4, 5].map((i) => open(s.port, `127.0.106.${10 + i}`)))
    await pollUntil('5 connections counted', async () => (await s.conns()) === 5)
    const late = await open(s.port, '127.0.106.20')
    expect(await late.closedWithin(2000)).toBe(true)
    expect(s.log.messages()).toContain('refusing connections from 127.0.106.20: the node holds 5 connections (cap 5); 1 refused in the last 60 s')
    held[0]!.sock.destroy()
    await pollUntil('a slot freed', async () => (await s.conns()) === 4)
    const next = await open(s.port, '127.0.106.20')
    next.sock.write(request('c', 1, 'ping'))
    expect((await next.repliesAtLeast(1))[0]).toMatchObject({ code: 200 })
  })
})

describe('requests in flight per export', () => {
  it('past the cap a request is refused at once with 503 EAGAIN; other clients are served; answered ones make room', async () => {
    const s = serve({ maxInflightPerExport: 3 })
    await s.listening
    const c = await open(s.port, '127.0.106.1')
    c.sock.write(Buffer.concat([1, 2, 3, 4].map((x) => request('greedy', x))))
    const [refused] = await c.repliesAtLeast(1)
    expect(refused).toMatchObject({ xid: 4, code: 503, header: { status: -11 } })
    expect(refused!.header.error).toMatch(/client greedy has 3 requests in flight at spfs-OST0001 \(cap 3\)/)
    expect(s.held).toHaveLength(3)
    // HTTP: the same export's count, the same refusal.
    const h = await open(s.port, '127.0.106.1')
    h.sock.write(httpRequest('greedy', 5))
    await pollUntil('HTTP refusal', () => h.text.startsWith('HTTP/1.1 503'))
    expect(h.text).toMatch(/x-lp-status: -11/)
    c.sock.write(request('modest', 6))
    await pollUntil('the other client reaches the target', () => s.held.length === 4)
    s.release()
    await c.repliesAtLeast(5)
    c.sock.write(request('greedy', 7))
    await pollUntil('room again', () => s.held.length === 1)
    s.release()
    expect((await c.repliesAtLeast(6)).at(-1)).toMatchObject({ xid: 7, code: 200 })
  })
})

describe('deadlines (slowloris)', () => {
  const limits = { headMs: 300, minBodyBytesPerSec: 1000, idleMs: 600 }

  it('drop a connection that never says a word, and one whose binary head trickles, freeing them', async () => {
    const s = serve(limits)
    await s.listening
    const silent = await open(s.port, '127.0.106.1')
    const t0 = performance.now()
    const head = await open(s.port, '127.0.106.1')
    const bytes = request('slow', 1)
    head.sock.write(bytes.subarray(0, 1))
    await trickling(50, () => head.sock.writable && head.sock.write(bytes.subarray(1, 2)), async () => {
      expect(await silent.closedWithin(2000)).toBe(true)
      expect(await head.closedWithin(2000)).toBe(true)
    })
    // Closed once its head's deadline passed, not before.
    expect((await head.closed) - t0).toBeGreaterThanOrEqual(250)
    expect(head.replies()[0]).toMatchObject({ code: 408, header: { status: -110, error: expect.stringMatching(/request head not complete within 300 ms/) } })
    await pollUntil('connections freed', async () => (await s.conns()) === 0)
    expect(s.held).toHaveLength(0)
  })

  it('drop a binary body that trickles below its rate, by a deadline sized from its declared length', async () => {
    const s = serve(limits)
    await s.listening
    const p = await open(s.port, '127.0.106.1')
    // 500 bytes of bulk declared: due 300 + 500 ms after the message's first byte.
    const msg = Buffer.concat(encodeRequest(header('slow', 1, 'ping'), { a: {} }, Buffer.alloc(500)))
    const t0 = performance.now()
    p.sock.write(msg.subarray(0, msg.length - 500))
    let at = msg.length - 500
    await trickling(20, () => p.sock.writable && at < msg.length && p.sock.write(msg.subarray(at, ++at)), async () => {
      expect(await p.closedWithin(3000)).toBe(true)
    })
    expect((await p.closed) - t0).toBeGreaterThanOrEqual(750)
    expect(p.replies()[0]).toMatchObject({ code: 408, header: { error: expect.stringMatching(/request body of \d+ bytes not complete within \d+ ms/) } })
    await pollUntil('connection freed', async () => (await s.conns()) === 0)
  })

  it('drop an HTTP head and an HTTP body that trickle, with a 408 and an errno', async () => {
    const s = serve(limits)
    await s.listening
    const head = await open(s.port, '127.0.106.1')
    const body = await open(s.port, '127.0.106.1')
    const text = httpRequest('slow', 1, Buffer.concat([Buffer.from('\0\0\0\x08{"a":{}}'), Buffer.alloc(400)]))
    const headEnd = text.indexOf('\r\n\r\n') + 4
    head.sock.write(text.slice(0, 10))
    body.sock.write(text.slice(0, headEnd + 5))
    let h = 10
    let b = headEnd + 5
    const step = () => {
      if (head.sock.writable && h < headEnd) head.sock.write(text.slice(h, ++h))
      if (body.sock.writable && b < text.length) body.sock.write(text.slice(b, ++b))
    }
    await trickling(30, step, async () => {
      // The head's check runs every 500 ms; the body (412 bytes) is due 712 ms after its head.
      expect(await head.closedWithin(3000)).toBe(true)
      expect(await body.closedWithin(3000)).toBe(true)
    })
    expect(head.text).toMatch(/^HTTP\/1.1 408 [^]*x-lp-status: -110/)
    expect(body.text).toMatch(/^HTTP\/1.1 408 [^]*x-lp-status: -110[^]*request%20body%20of%20412%20bytes/)
    await pollUntil('connections freed', async () => (await s.conns()) === 0)
    expect(s.held).toHaveLength(0)
  })

  it('close idle connections of both transports, never one with a request at its target', async () => {
    const s = serve(limits)
    await s.listening
    const tcp = await open(s.port, '127.0.106.1')
    const http = await open(s.port, '127.0.106.1')
    const busy = await open(s.port, '127.0.106.1')
    tcp.sock.write(request('a', 1, 'ping'))
    http.sock.write(httpRequest('a', 2).replace('statfs', 'ping'))
    busy.sock.write(request('a', 3))
    await tcp.repliesAtLeast(1)
    await pollUntil('HTTP reply', () => http.text.startsWith('HTTP/1.1 200'))
    expect(await tcp.closedWithin(2000)).toBe(true)
    expect(await http.closedWithin(2000)).toBe(true)
    expect(busy.sock.destroyed).toBe(false)
    s.release()
    expect((await busy.repliesAtLeast(1))[0]).toMatchObject({ xid: 3, code: 200 })
    expect(await busy.closedWithin(2000)).toBe(true)
  })
})
