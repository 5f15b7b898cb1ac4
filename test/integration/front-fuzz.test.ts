/**
 * A fuzz test of the node's front against real node processes (an MGS and MDT, an OST):
 * thousands of random and mutated binary messages and HTTP requests (fast-check), from a
 * client that never connected. Every answer must be a refusal with an errno (a 4xx, or a
 * served reply with a negative status), or the connection closed for a frame that breaks
 * framing; the nodes never crash or answer 5xx; nothing changes on disk; a well-behaved
 * client is served afterwards.
 */
import { describe, it, expect, beforeAll, afterAll } from 'vitest'
import { createHash } from 'node:crypto'
import { promises as fsp } from 'node:fs'
import net from 'node:net'
import path from 'node:path'
import fc from 'fast-check'
import { MAX_IO } from '../../src/protocol/ops.js'
import { MAX_REQUEST_JSON, MsgReader, REPLY_LIMITS, REQUEST_LIMITS, type ReplyMsg, encodeRequest, opCode } from '../../src/protocol/msg.js'
import { encodeFrame, encodeReqHeader, type ReqHeader } from '../../src/protocol/wire.js'
import { NodeSet, type NodeProc, formatMgsMdt, formatOst } from '../helpers/nodes.js'

const PORT = 30600
const MDS = '127.0.105.10'
const OSS = '127.0.105.11'
const PARAMS = ['commit_interval=0.2', 'mmp_interval=0.1', 'sys.timeout=5']
/** After this long with no answer, a case is taken to wait for bytes it will never get: the client ends its side. */
const QUIET_MS = 150

const nodes = new NodeSet()
let root = ''
let mds: NodeProc
let oss: NodeProc

beforeAll(async () => {
  root = await nodes.tempDir('lp-fuzz')
  await formatMgsMdt({ dir: path.join(root, 'mdt'), port: PORT, params: PARAMS })
  await formatOst({ dir: path.join(root, 'ost1'), index: 1, mgsnode: `${MDS}@tcp`, port: PORT, params: PARAMS })
  mds = await nodes.start({ nid: `${MDS}@tcp`, port: PORT, dir: path.join(root, 'mdt') })
  oss = await nodes.start({ nid: `${OSS}@tcp`, port: PORT, dir: path.join(root, 'ost1') })
}, 60_000)
afterAll(() => nodes.cleanup())

interface Base {
  host: string
  h: ReqHeader
  args: unknown
  bulk?: Buffer
}

const CLIENT = 'fuzz-client-never-connected'
const header = (target: string, op: string, extra: Partial<ReqHeader> = {}): ReqHeader => ({ target, op, client: CLIENT, connCnt: 1, xid: 7, lastXid: 0, flags: [], ...extra })

/** Well-formed requests of every kind of target (none a connect: the one op served without an export). */
function bases(): Base[] {
  const mdt = 'spfs-MDT0000'
  const ost = 'spfs-OST0001'
  return [
    { host: MDS, h: header('MGS', 'ping'), args: {} },
    { host: MDS, h: header('MGS', 'mgs_set_param'), args: { target: ost, key: 'active', value: '0' } },
    { host: MDS, h: header('MGS', 'mgs_target_reg'), args: { name: 'spfs-OST0009', kind: 'ost', index: 9, fsname: 'spfs', nid: '10.0.0.9@tcp', failnodes: [], mode: 'failover', instance: 1 } },
    { host: MDS, h: header(mdt, 'mdt_create'), args: { parent: 1, name: 'evil', type: 'reg', mode: 0o644, uid: 0, gid: 0, time: 1 } },
    { host: MDS, h: header(mdt, 'mdt_setattr', { handle: '00000000000000ff', connCnt: 3 }), args: { fid: 1, mode: 0o777 } },
    { host: MDS, h: header(mdt, 'mdt_unlink', { flags: ['replay'], transno: 12 }), args: { parent: 1, name: 'x', time: 1 } },
    { host: OSS, h: header(ost, 'ost_write'), args: { fid: 5, stripe: 0, offset: 0 }, bulk: Buffer.alloc(300, 0x61) },
    { host: OSS, h: header(ost, 'ost_read', { flags: ['resend'] }), args: { fid: 5, stripe: 0, offset: 0, length: 4096 } },
    { host: OSS, h: header(ost, 'ost_punch'), args: { fid: 5, stripe: 0, size: 0 } },
    { host: OSS, h: header(ost, 'statfs'), args: {} },
  ]
}
const BASES = bases()
const CONNECT = opCode('connect')

// ---- the disk ----

/** Every file under the targets' directories with a digest of its contents, but those that change with no client (MMP and its temporary files, logs). */
async function snapshot(): Promise<Map<string, string>> {
  const out = new Map<string, string>()
  async function walk(dir: string): Promise<void> {
    for (const e of await fsp.readdir(dir, { withFileTypes: true })) {
      const p = path.join(dir, e.name)
      if (e.isDirectory()) await walk(p)
      else if (e.isFile() && !VOLATILE.test(e.name)) out.set(path.relative(root, p), createHash('sha256').update(await fsp.readFile(p)).digest('hex'))
    }
  }
  await walk(path.join(root, 'mdt'))
  await walk(path.join(root, 'ost1'))
  return out
}
const VOLATILE = /^mmp$|\.tmp-|\.log$/

/** The disk once the nodes are done starting (registration, the MDT's connection to the OST): two snapshots alike. */
async function settled(): Promise<Map<string, string>> {
  const end = Date.now() + 20_000
  let last = await snapshot()
  for (;;) {
    await new Promise((r) => setTimeout(r, 300))
    const now = await snapshot()
    if (same(last, now)) return now
    if (Date.now() > end) throw new Error('the targets\' files did not settle within 20 s')
    last = now
  }
}

function same(a: Map<string, string>, b: Map<string, string>): boolean {
  return a.size === b.size && [...a].every(([k, v]) => b.get(k) === v)
}

// ---- talking ----

interface Exchange {
  data: Buffer
  /** The server closed the connection before the client ended its side. */
  closedByServer: boolean
}

/**
 * Send `bytes` on a new connection; end the client's side once `done(received)` says the
 * answers are in (at once when `done` of nothing does: the server is known to wait for more),
 * or after QUIET_MS without a byte; resolve when the connection closes.
 */
function exchange(host: string, bytes: Buffer, done: (data: Buffer) => boolean): Promise<Exchange> {
  return new Promise((resolve, reject) => {
    const sock = net.connect({ host, port: PORT })
    const chunks: Buffer[] = []
    let ended = false
    let quiet: NodeJS.Timeout | undefined
    const end = (): void => {
      if (ended) return
      ended = true
      sock.end()
    }
    const wait = (): void => {
      clearTimeout(quiet)
      quiet = setTimeout(end, QUIET_MS)
    }
    const stuck = setTimeout(() => {
      sock.destroy()
      reject(new Error(`no close within 10 s after ${bytes.length} bytes: ${bytes.subarray(0, 200).toString('hex')}`))
    }, 10_000)
    sock.on('connect', () => {
      sock.write(bytes)
      if (done(Buffer.alloc(0))) end()
      else wait()
    })
    sock.on('data', (c: Buffer) => {
      chunks.push(c)
      let answered = false
      try {
        answered = done(Buffer.concat(chunks))
      } catch {
        // Not what was expected: the check after the close says why.
      }
      if (answered) end()
      else wait()
    })
    sock.on('error', () => undefined)
    sock.on('close', () => {
      clearTimeout(quiet)
      clearTimeout(stuck)
      resolve({ data: Buffer.concat(chunks), closedByServer: !ended })
    })
  })
}

/** A reply is a refusal with an errno, or a served reply with a negative status: nothing succeeds, nothing fails inside. */
function expectRefusal(code: number, status: number, errno: unknown, what: string): void {
  const ok = (code >= 400 && code < 500 && status < 0 && typeof errno === 'string') || (code === 200 && status < 0)
  if (!ok) throw new Error(`${what}: answered code ${code}, status ${status}, errno ${String(errno)}`)
}

// ---- binary messages ----

type Mutation =
  | { k: 'flip'; at: number; bit: number }
  | { k: 'set'; at: number; v: number }
  | { k: 'u8'; field: number; v: number }
  | { k: 'u16'; field: number; v: number }
  | { k: 'u32'; field: number; v: number }
  | { k: 'u64'; field: number; hi: number; lo: number }
  | { k: 'cut'; at: number }
  | { k: 'insert'; at: number; bytes: Uint8Array }

const byteMutation = fc.oneof(
  fc.record({ k: fc.constant('flip' as const), at: fc.nat(), bit: fc.integer({ min: 0, max: 7 }) }),
  fc.record({ k: fc.constant('set' as const), at: fc.nat(), v: fc.integer({ min: 0, max: 255 }) }),
  fc.record({ k: fc.constant('cut' as const), at: fc.nat() }),
  fc.record({ k: fc.constant('insert' as const), at: fc.nat(), bytes: fc.uint8Array({ minLength: 1, maxLength: 16 }) }),
)
const lengths = fc.oneof(fc.nat(), fc.constantFrom(0, 1, 0xffffffff, MAX_REQUEST_JSON, MAX_REQUEST_JSON + 1, MAX_IO, MAX_IO + 1))
/** Mutations of the binary header's fields: version, type, flags, lengths, xid/last_xid/transno, conn_cnt, op code, string lengths. */
const fieldMutation = fc.oneof(
  fc.record({ k: fc.constant('u8' as const), field: fc.constantFrom(4, 5, 46, 47, 48, 49), v: fc.integer({ min: 0, max: 255 }) }),
  fc.record({ k: fc.constant('u16' as const), field: fc.constantFrom(6, 44, 50), v: fc.integer({ min: 0, max: 0xffff }) }),
  fc.record({ k: fc.constant('u32' as const), field: fc.constantFrom(8, 12, 40), v: lengths }),
  fc.record({ k: fc.constant('u64' as const), field: fc.constantFrom(16, 24, 32), hi: fc.nat(), lo: fc.nat() }),
)
const mutation: fc.Arbitrary<Mutation> = fc.oneof(byteMutation, fieldMutation)

function mutate(src: Buffer, muts: readonly Mutation[]): Buffer {
  let b = Buffer.from(src)
  for (const m of muts) {
    if (!b.length) break
    if (m.k === 'flip') b[m.at % b.length]! ^= 1 << m.bit
    else if (m.k === 'set') b[m.at % b.length] = m.v
    else if (m.k === 'cut') b = b.subarray(0, m.at % b.length)
    else if (m.k === 'insert') b = Buffer.concat([b.subarray(0, m.at % b.length), m.bytes, b.subarray(m.at % b.length)])
    else if (b.length >= 52) {
      if (m.k === 'u8') b.writeUInt8(m.v, m.field)
      else if (m.k === 'u16') b.writeUInt16BE(m.v, m.field)
      else if (m.k === 'u32') b.writeUInt32BE(m.v >>> 0, m.field)
      else {
        b.writeUInt32BE(m.hi >>> 0, m.field)
        b.writeUInt32BE(m.lo >>> 0, m.field + 4)
      }
    }
  }
  return b
}

const binaryOf = (x: Base) => Buffer.concat(encodeRequest(x.h, { a: x.args }, x.bulk))

/**
 * How many whole messages the server will read from `bytes` (as its reader does), whether the
 * framing breaks, and whether one is a connect (the one op served without an export: such a
 * case is not sent, as it would connect the fuzzing client).
 */
function framing(bytes: Buffer): { messages: number; broken: boolean; connect: boolean } {
  const r = new MsgReader('request', REQUEST_LIMITS)
  let messages = 0
  let connect = false
  try {
    r.push(bytes, (m) => {
      messages++
      if (m.type === 'request' && m.h.op === 'connect') connect = true
    })
  } catch {
    return { messages, broken: true, connect }
  }
  return { messages, broken: false, connect }
}

/** The whole replies in `data`. */
function repliesOf(data: Buffer): ReplyMsg[] {
  const out: ReplyMsg[] = []
  new MsgReader('reply', REPLY_LIMITS).push(data, (m) => void out.push(m as ReplyMsg))
  return out
}

/** How many whole replies `data` holds; malformed ones say the answers are all in. */
function replyCount(data: Buffer): number {
  try {
    return repliesOf(data).length
  } catch {
    return Infinity
  }
}

function checkBinary(bytes: Buffer, x: Exchange): void {
  // A first byte mutated away from the magic's makes it an HTTP request to the front.
  if (bytes[0] !== 0x9c) return checkHttp(bytes, '', x)
  for (const r of repliesOf(x.data)) {
    const body = JSON.parse(r.json.toString('utf8')) as { errno?: unknown }
    expectRefusal(r.code, r.header.status, body.errno, `message ${bytes.subarray(0, 120).toString('hex')}`)
  }
}

// ---- HTTP ----

type HeaderMutation = { k: 'drop'; which: number } | { k: 'set'; which: number; v: string } | { k: 'add'; name: string; v: string }

const text = fc.oneof(fc.string({ maxLength: 40 }), fc.string({ unit: 'binary', maxLength: 20 }))
const headerMutation: fc.Arbitrary<HeaderMutation> = fc.oneof(
  fc.record({ k: fc.constant('drop' as const), which: fc.nat() }),
  fc.record({ k: fc.constant('set' as const), which: fc.nat(), v: fc.oneof(text, fc.integer().map(String), fc.constantFrom('-1', '1e99', '9007199254740993', 'replay', 'replay,resend,bogus', '')) }),
  fc.record({ k: fc.constant('add' as const), name: fc.oneof(fc.stringMatching(/^[a-z][a-z-]{0,15}$/), text), v: text }),
)

const httpCase = fc.record({
  base: fc.nat({ max: BASES.length - 1 }),
  method: fc.oneof({ arbitrary: fc.constant('POST'), weight: 6 }, fc.constantFrom('GET', 'PUT', 'DELETE', 'OPTIONS'), fc.stringMatching(/^[A-Z]{1,10}$/)),
  path: fc.oneof({ arbitrary: fc.constant('/rpc'), weight: 6 }, fc.constantFrom('/', '/rpc/', '/RPC', '*', '/rpc?x=1', 'http://x/rpc'), text),
  headers: fc.array(headerMutation, { maxLength: 4 }),
  body: fc.array(byteMutation, { maxLength: 3 }),
  lengthDelta: fc.oneof({ arbitrary: fc.constant(0), weight: 4 }, fc.integer({ min: -30, max: 30 }), fc.constantFrom(MAX_REQUEST_JSON + MAX_IO + 1)),
  headFlips: fc.array(fc.record({ at: fc.nat(), v: fc.integer({ min: 0, max: 255 }) }), { maxLength: 2 }),
})

type HttpCase = typeof httpCase extends fc.Arbitrary<infer T> ? T : never

function httpBytes(c: HttpCase): Buffer {
  const x = BASES[c.base]!
  const headers = Object.entries(encodeReqHeader(x.h))
  for (const m of c.headers) {
    if (m.k === 'drop' && headers.length) headers.splice(m.which % headers.length, 1)
    else if (m.k === 'set' && headers.length) headers[m.which % headers.length]![1] = m.v
    else if (m.k === 'add') headers.push([m.name, m.v])
  }
  // The one op served without an export is never sent (it would connect the fuzzing client).
  for (const h of headers) if (h[0] === 'x-lp-op' && h[1].trim().toLowerCase() === 'connect') h[1] = 'ping'
  const body = mutate(Buffer.concat(encodeFrame({ a: x.args }, x.bulk)), c.body)
  const length = Math.max(0, body.length + c.lengthDelta)
  const lines = [`${c.method} ${c.path} HTTP/1.1`, 'host: fuzz', ...headers.map(([k, v]) => `${k}: ${v}`), `content-length: ${length}`, '', '']
  const head = Buffer.from(lines.join('\r\n'), 'latin1')
  for (const f of c.headFlips) head[f.at % head.length] = f.v
  return Buffer.concat([head, body])
}

interface HttpResponse {
  code: number
  headers: Map<string, string>
  body: Buffer
}

/** The responses in `data` and whether it ends with a whole one (a HEAD's has no body). */
function responses(data: Buffer, head: boolean): { list: HttpResponse[]; complete: boolean } {
  const list: HttpResponse[] = []
  let at = 0
  while (at < data.length) {
    const end = data.indexOf('\r\n\r\n', at)
    if (end < 0) return { list, complete: false }
    const [status, ...lines] = data.subarray(at, end).toString('latin1').split('\r\n')
    const m = /^HTTP\/1\.1 (\d{3}) /.exec(status!)
    if (!m) throw new Error(`not an HTTP response: ${JSON.stringify(data.subarray(at, at + 200).toString('latin1'))}`)
    const headers = new Map(lines.map((l) => [l.slice(0, l.indexOf(':')).toLowerCase(), l.slice(l.indexOf(':') + 1).trim()]))
    const n = head ? 0 : Number(headers.get('content-length') ?? 0)
    if (data.length < end + 4 + n) return { list, complete: false }
    list.push({ code: Number(m[1]), headers, body: data.subarray(end + 4, end + 4 + n) })
    at = end + 4 + n
  }
  return { list, complete: list.length > 0 }
}

function checkHttp(bytes: Buffer, method: string, x: Exchange): void {
  const what = `request ${JSON.stringify(bytes.subarray(0, 300).toString('latin1'))} answered ${JSON.stringify(x.data.subarray(0, 300).toString('latin1'))}`
  const { list } = responses(x.data, method === 'HEAD')
  for (const r of list) {
    let errno: unknown
    if (r.code !== 200 && r.body.length >= 4) errno = (JSON.parse(r.body.subarray(4, 4 + r.body.readUInt32BE(0)).toString('utf8')) as { errno?: unknown }).errno
    if (method === 'HEAD' && r.code >= 400 && r.code < 500) errno = 'HEAD: no body'
    expectRefusal(r.code, Number(r.headers.get('x-lp-status')), errno, what)
  }
}

describe('the front under fuzzing', () => {
  it('refuses thousands of random and mutated messages and HTTP requests with an errno, never crashing nor changing the disk', async () => {
    const before = await settled()
    let sent = 0

    // Binary: valid messages mutated byte-wise and field-wise, optionally followed by a valid one.
    await fc.assert(
      fc.asyncProperty(fc.nat({ max: BASES.length - 1 }), fc.array(mutation, { minLength: 1, maxLength: 4 }), fc.boolean(), async (i, muts, follow) => {
        const x = BASES[i]!
        let bytes = mutate(binaryOf(x), muts)
        if (bytes.length >= 46 && bytes.readUInt16BE(44) === CONNECT) bytes.writeUInt16BE(0, 44)
        if (follow) bytes = Buffer.concat([bytes, binaryOf(BASES[(i + 1) % BASES.length]!)])
        const f = framing(bytes)
        fc.pre(!f.connect)
        const ex = await exchange(x.host, bytes, (data) => (bytes[0] === 0x9c ? !f.broken && replyCount(data) >= f.messages : responses(data, false).complete))

        sent++
        checkBinary(bytes, ex)
        // A frame that breaks framing: answered EPROTO, then the server closes the connection itself.
        if (bytes[0] === 0x9c && f.broken) {
          expect(ex.closedByServer).toBe(true)
          expect(repliesOf(ex.data).at(-1)?.header.status).toBe(-71)
        }
      }),
      { numRuns: 2000 },
    )

    // Binary: random bytes behind the magic's first byte.
    await fc.assert(
      fc.asyncProperty(fc.uint8Array({ minLength: 1, maxLength: 300 }), fc.boolean(), async (raw, mds1) => {
        const bytes = Buffer.from(raw)
        bytes[0] = 0x9c
        if (bytes.length >= 46 && bytes.readUInt16BE(44) === CONNECT) bytes.writeUInt16BE(0, 44)
        const f = framing(bytes)
        fc.pre(!f.connect)
        const ex = await exchange(mds1 ? MDS : OSS, bytes, (data) => !f.broken && replyCount(data) >= f.messages)
        sent++
        checkBinary(bytes, ex)
      }),
      { numRuns: 500 },
    )

    // HTTP: methods, paths, headers, lengths and bodies, and bytes of the head itself.
    await fc.assert(
      fc.asyncProperty(httpCase, async (c) => {
        const bytes = httpBytes(c)
        // A body shorter than its declared length is waited for: the client ends its side at once.
        const ex = await exchange(BASES[c.base]!.host, bytes, (data) => c.lengthDelta > 0 || responses(data, c.method === 'HEAD').complete)
        sent++
        checkHttp(bytes, c.method, ex)
      }),
      { numRuns: 2000 },
    )

    expect(sent).toBe(4500)
    expect(mds.alive && oss.alive).toBe(true)
    const after = await snapshot()
    expect([...after.entries()].filter(([k, v]) => before.get(k) !== v)).toEqual([])
    expect([...before.keys()].filter((k) => !after.has(k))).toEqual([])

    // A well-behaved client is served afterwards, on both transports.
    const ping = (client: string) => Buffer.concat(encodeRequest(header('spfs-MDT0000', 'connect', { client, xid: 1, connCnt: 1 }), { a: {} }))
    const ex = await exchange(MDS, ping('fuzz-after'), (d) => d.length > 48)
    expect(repliesOf(ex.data)[0]).toMatchObject({ code: 200, header: { status: 0 } })
    const head = Object.entries(encodeReqHeader(header('spfs-OST0001', 'connect', { client: 'fuzz-after-http' }))).map(([k, v]) => `${k}: ${v}\r\n`)
    const body = Buffer.concat(encodeFrame({ a: {} }))
    const http = await exchange(OSS, Buffer.concat([Buffer.from(`POST /rpc HTTP/1.1\r\nhost: x\r\n${head.join('')}content-length: ${body.length}\r\n\r\n`), body]), (d) => responses(d, false).complete)
    const r = responses(http.data, false).list[0]
    expect(r?.code).toBe(200)
    expect(r?.headers.get('x-lp-status')).toBe('0')
    // The snapshot sees what a request changes: the two connects reach the journals.
    const deadline = Date.now() + 10_000
    while (same(after, await snapshot())) {
      if (Date.now() > deadline) throw new Error('two connects changed nothing the snapshot sees')
      await new Promise((res) => setTimeout(res, 100))
    }
  }, 120_000)
})
