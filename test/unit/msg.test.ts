/**
 * The binary message of `@tcp` NIDs (src/protocol/msg.ts): round trips in any chunking, the
 * bulk never copied, and every malformed header refused before a body is buffered.
 */
import { describe, expect, it } from 'vitest'
import {
  MAX_REQUEST_JSON,
  MSG_MAGIC,
  MSG_VERSION,
  MsgError,
  MsgReader,
  REPLY_FIXED,
  REPLY_LIMITS,
  REQ_FIXED,
  REQUEST_LIMITS,
  encodeReply,
  encodeRequest,
  opCode,
  parseJson,
  type ReplyMsg,
  type RequestMsg,
} from '../../src/protocol/msg.js'
import { MAX_IO, OPS } from '../../src/protocol/ops.js'
import { FrameError, type ReplyHeader, type ReqHeader } from '../../src/protocol/wire.js'

const full: ReqHeader = {
  target: 'spfs-OST0001',
  op: 'ost_write',
  client: '3f0c1a2b-0000-4000-8000-000000000001',
  handle: '0123456789abcdef',
  connCnt: 3,
  xid: 2 ** 52 + 7,
  lastXid: 2 ** 40,
  flags: ['replay', 'resend', 'replay_done'],
  transno: 2 ** 53 - 1,
}
const minimal: ReqHeader = { target: 'MGS', op: 'connect', client: 'c1', connCnt: 0, xid: 1, lastXid: 0, flags: [] }

/** The messages one chunk completes. */
function push(reader: MsgReader, chunk: Buffer): Array<RequestMsg | ReplyMsg> {
  const out: Array<RequestMsg | ReplyMsg> = []
  reader.push(chunk, (m) => out.push(m))
  return out
}

/** The bytes cut at `cuts`, fed to a reader piece by piece. */
function feed(reader: MsgReader, whole: Buffer, cuts: number[]): Array<RequestMsg | ReplyMsg> {
  const out: Array<RequestMsg | ReplyMsg> = []
  let at = 0
  for (const c of [...cuts, whole.length]) {
    out.push(...push(reader, whole.subarray(at, c)))
    at = c
  }
  return out
}

const requests = () => new MsgReader('request', REQUEST_LIMITS)
const replies = () => new MsgReader('reply', REPLY_LIMITS)

describe('binary messages', () => {
  it('round-trip a request with every header field, its JSON and its bulk, whatever the chunking', () => {
    const bulk = Buffer.from(Array.from({ length: 70_000 }, (_, i) => (i * 7) & 0xff))
    const body = { a: { fid: 7, name: 'héllo ✓' }, r: [1, 2] }
    const parts = encodeRequest(full, body, bulk)
    // The bulk leaves as the caller's buffer, not a copy.
    expect(parts[parts.length - 1]).toBe(bulk)
    const whole = Buffer.concat(parts)
    for (const cuts of [[], [1], [REQ_FIXED - 1], [REQ_FIXED + 3], [60, 200, 5000, 69_000], Array.from({ length: 40 }, (_, i) => i * 2000 + 1)]) {
      const msgs = feed(requests(), whole, cuts) as RequestMsg[]
      expect(msgs).toHaveLength(1)
      expect(msgs[0]!.h).toEqual(full)
      expect(parseJson(msgs[0]!.json)).toEqual(body)
      expect(Buffer.compare(Buffer.concat(msgs[0]!.bulk), bulk)).toBe(0)
    }
    const m = push(requests(), Buffer.concat(encodeRequest(minimal, undefined))) as RequestMsg[]
    expect(m[0]!.h).toEqual({ ...minimal, handle: undefined, transno: undefined })
    expect(parseJson(m[0]!.json)).toEqual({})
    expect(m[0]!.bulk).toEqual([])
  })

  it('gives the bulk as views of the chunks it arrived in', () => {
    const bulk = Buffer.alloc(10_000, 0xab)
    const whole = Buffer.concat(encodeRequest(full, {}, bulk))
    const chunks = [whole.subarray(0, 3000), whole.subarray(3000, 7000), whole.subarray(7000)]
    const reader = requests()
    const msgs = chunks.flatMap((c) => push(reader, c)) as RequestMsg[]
    for (const p of msgs[0]!.bulk) expect(chunks.some((c) => c.buffer === p.buffer)).toBe(true)
    expect(msgs[0]!.bulk.reduce((n, p) => n + p.length, 0)).toBe(10_000)
  })

  it('reads many messages from one chunk, and a partial one only once it is complete', () => {
    const a = Buffer.concat(encodeRequest({ ...minimal, xid: 1 }, { a: 1 }))
    const b = Buffer.concat(encodeRequest({ ...minimal, xid: 2 }, { a: 2 }, Buffer.alloc(5)))
    const c = Buffer.concat(encodeRequest({ ...minimal, xid: 3 }, { a: 3 }))
    const reader = requests()
    const first = push(reader, Buffer.concat([a, b, c.subarray(0, 10)])) as RequestMsg[]
    expect(first.map((m) => m.h.xid)).toEqual([1, 2])
    // Truncated: nothing comes out of a message until its last byte.
    expect(push(reader, c.subarray(10, c.length - 1))).toEqual([])
    expect((push(reader, c.subarray(c.length - 1)) as RequestMsg[]).map((m) => m.h.xid)).toEqual([3])
    // A message before a malformed one in the same chunk is delivered before the refusal.
    const seen: number[] = []
    expect(() => requests().push(Buffer.concat([a, Buffer.alloc(REQ_FIXED)]), (m) => seen.push((m as RequestMsg).h.xid))).toThrow(/bad magic/)
    expect(seen).toEqual([1])
  })

  it('round-trip a reply: code, status, transno, last_committed, flags and an error in any characters', () => {
    const r: ReplyHeader = { status: -17, transno: 2 ** 50, lastCommitted: 98, flags: ['recovering', 'stale_conn'], error: "'a b' exists: ✗ 100%" }
    const bulk = [Buffer.from('abc'), Buffer.from('def')]
    const whole = Buffer.concat(encodeReply(2 ** 45 + 1, 200, r, { n: 1 }, bulk))
    const msgs = feed(replies(), whole, [5, REPLY_FIXED + 2]) as ReplyMsg[]
    expect(msgs[0]).toMatchObject({ xid: 2 ** 45 + 1, code: 200, header: r })
    expect(parseJson(msgs[0]!.json)).toEqual({ n: 1 })
    expect(Buffer.concat(msgs[0]!.bulk).toString()).toBe('abcdef')
    const ok = push(replies(), Buffer.concat(encodeReply(5, 404, { status: 0, transno: 0, lastCommitted: 5, flags: [] }, {}))) as ReplyMsg[]
    expect(ok[0]).toMatchObject({ xid: 5, code: 404, header: { status: 0, transno: 0, lastCommitted: 5, flags: [], error: undefined }, auth: undefined })
  })

  it('asks its head check before any body is buffered, and drops a refused body as it arrives, staying in step', () => {
    const asked: number[] = []
    const reader = new MsgReader<string>('request', REQUEST_LIMITS, (head) => {
      asked.push(head.h.xid)
      return { verdict: head.auth ?? 'none', readBody: head.h.xid !== 2 }
    })
    const one = (xid: number, auth?: string) => Buffer.concat(encodeRequest({ ...full, xid }, { a: xid }, Buffer.alloc(1000, xid), auth))
    const [a, b, c] = [one(1, 'tok'), one(2), one(3)]
    const got: RequestMsg<string>[] = []
    const bodyOf = (xid: number) => Buffer.from(JSON.stringify({ a: xid })).length + 1000
    // The refused request's header alone: asked at once, though none of its body came.
    reader.push(Buffer.concat([a, b.subarray(0, b.length - bodyOf(2))]), (m) => got.push(m as RequestMsg<string>))
    expect(asked).toEqual([1, 2])
    reader.push(Buffer.concat([b.subarray(b.length - bodyOf(2)), c]), (m) => got.push(m as RequestMsg<string>))
    expect(got.map((m) => [m.h.xid, m.verdict, m.json.length, Buffer.concat(m.bulk).length])).toEqual([
      [1, 'tok', bodyOf(1) - 1000, 1000],
      [2, 'none', 0, 0],
      [3, 'none', bodyOf(3) - 1000, 1000],
    ])
    expect(parseJson(got[2]!.json)).toEqual({ a: 3 })
  })

  it('carries the shared key\'s token on a request and a reply, after the strings and before the JSON', () => {
    const token = 'v1.' + 'x'.repeat(120)
    const req = push(requests(), Buffer.concat(encodeRequest(full, { a: 1 }, Buffer.from('bulk'), token))) as RequestMsg[]
    expect(req[0]).toMatchObject({ h: full, auth: token })
    expect(parseJson(req[0]!.json)).toEqual({ a: 1 })
    const r: ReplyHeader = { status: -2, transno: 0, lastCommitted: 0, flags: [], error: 'no such file' }
    const rep = push(replies(), Buffer.concat(encodeReply(7, 200, r, { b: 2 }, undefined, token))) as ReplyMsg[]
    expect(rep[0]).toMatchObject({ xid: 7, header: r, auth: token })
    expect(parseJson(rep[0]!.json)).toEqual({ b: 2 })
    expect(() => encodeRequest(full, {}, undefined, 't'.repeat(256))).toThrow(/auth token is longer than 255/)
  })

  it('numbers every op of the catalogue, from 1; an unknown code reaches the front as an op no target serves', () => {
    const names = Object.keys(OPS)
    expect(names.map(opCode)).toEqual(names.map((_, i) => i + 1))
    expect(() => opCode('bogus')).toThrow(FrameError)
    const whole = Buffer.concat(encodeRequest(minimal, {}))
    whole.writeUInt16BE(999, 44)
    expect((push(requests(), whole) as RequestMsg[])[0]!.h.op).toBe('#999')
  })

  it('refuses to encode strings its length fields cannot carry', () => {
    expect(() => encodeRequest({ ...minimal, target: 't'.repeat(256) }, {})).toThrow(/target name is longer than 255/)
  })

  /** A well-formed request's bytes with `edit` applied to its fixed header. */
  const bad = (edit: (b: Buffer) => void, h: ReqHeader = full): Buffer => {
    const b = Buffer.concat(encodeRequest(h, { a: {} }, Buffer.alloc(16)))
    edit(b)
    return b
  }

  it.each([
    ['bad magic', bad((b) => b.writeUInt32BE(0x9c000000, 0)), /bad magic/, 0],
    ['an HTTP request', Buffer.from('POST /rpc HTTP/1.1\r\nhost: x\r\n\r\n'.padEnd(REQ_FIXED)), /bad magic/, 0],
    ['another version', bad((b) => b.writeUInt8(MSG_VERSION + 1, 4)), new RegExp(`unsupported message version ${MSG_VERSION + 1}`), 0],
    ['a reply where a request is due', bad((b) => b.writeUInt8(2, 5)), /type 2 where a request was expected/, full.xid],
    ['an xid past 2^53', bad((b) => b.writeUInt32BE(0x20_0000, 16)), /xid is out of range/, 0],
    ['JSON past its limit', bad((b) => b.writeUInt32BE(MAX_REQUEST_JSON + 1, 8)), /JSON of \d+ bytes exceeds/, full.xid],
    ['bulk past its limit', bad((b) => b.writeUInt32BE(MAX_IO + 1, 12)), /bulk of \d+ bytes exceeds/, full.xid],
    ['a length of 4 GiB', bad((b) => b.writeUInt32BE(0xffffffff, 12)), /exceeds/, full.xid],
    ['unknown flags', bad((b) => b.writeUInt16BE(0x0100, 6)), /unknown request flags 0x100/, full.xid],
    ['a transno past 2^53', bad((b) => b.writeUInt32BE(0xffffffff, 32)), /transno is out of range/, full.xid],
  ])('refuses a request with %s, saying why, the xid when the header has one', (_what, bytes, why, xid) => {
    let err: unknown
    try {
      push(requests(), bytes)
    } catch (e) {
      err = e
    }
    expect(err).toBeInstanceOf(MsgError)
    expect((err as MsgError).message).toMatch(why)
    expect((err as MsgError).xid).toBe(xid)
  })

  it('refuses an oversize message on its header alone, before any body is buffered', () => {
    const head = Buffer.concat(encodeRequest(full, {})).subarray(0, REQ_FIXED)
    head.writeUInt32BE(MAX_IO + 1, 12)
    expect(() => push(requests(), head)).toThrow(/bulk of 67108865 bytes exceeds 67108864/)
    // A reply's JSON may be larger than a request's, within its own limit.
    const r = Buffer.concat(encodeReply(1, 200, { status: 0, transno: 0, lastCommitted: 0, flags: [] }, {})).subarray(0, REPLY_FIXED)
    r.writeUInt32BE(REPLY_LIMITS.json + 1, 8)
    expect(() => push(replies(), r)).toThrow(MsgError)
    r.writeUInt32BE(MAX_REQUEST_JSON + 1, 8)
    expect(push(replies(), r)).toEqual([])
  })

  it('starts with a byte no HTTP method does, so one port can serve both transports', () => {
    expect(MSG_MAGIC >>> 24).toBeGreaterThanOrEqual(0x80)
    expect(Buffer.concat(encodeRequest(minimal, {}))[0]).toBe(MSG_MAGIC >>> 24)
  })

  it('refuses a body whose JSON does not parse', () => {
    expect(() => parseJson(Buffer.from('{x'))).toThrow(FrameError)
  })
})
