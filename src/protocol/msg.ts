/**
 * The binary message of `@tcp` NIDs, as LNet's socklnd carries ptlrpc: a fixed big-endian
 * header with the ptlrpc header's fields as integers, then the variable strings, the JSON
 * of the body and the bulk, in that order. Many messages are in flight on one connection;
 * a reply carries its request's xid. Lengths are read and checked against the limits before
 * any body is buffered: a peer never makes us hold more than one frame's limit.
 *
 * Request (REQ_FIXED bytes, then target, client, handle, auth, JSON, bulk):
 *   0 magic u32 | 4 version u8 | 5 type u8 | 6 flags u16 | 8 JSON length u32 | 12 bulk length u32
 *   16 xid u64 | 24 last_xid u64 | 32 transno u64 | 40 conn_cnt u32 | 44 op code u16
 *   46 target length u8 | 47 client length u8 | 48 handle length u8 | 49 auth length u8 | 50 reserved u16
 * Reply (REPLY_FIXED bytes, then the error message, auth, JSON, bulk):
 *   0..15 as a request | 16 xid u64 | 24 transno u64 | 32 last_committed u64 | 40 status i32
 *   44 code u16 | 46 error length u16 | 48 auth length u8 | 49 reserved u8 | 50 reserved u16
 * `code` is the front's verdict on the request, in HTTP's numbers so that both transports
 * report a refusal alike: 200 served (the status says how), 400 malformed, 404 no such
 * target here, 401 not authenticated, 403 not allowed with this key, 413 too large, 500 the
 * node failed. `auth` is the token of a filesystem's shared key (protocol/auth.ts), as text.
 */
import type { Socket } from 'node:net'
import { totalLength, copyFrom, slice } from '../common/chunks.js'
import { OPS, MAX_IO } from './ops.js'
import { type Bulk, bulkParts, FrameError, jsonBytes, REPLY_FLAGS, REQ_FLAGS, type ReplyFlag, type ReplyHeader, type ReqFlag, type ReqHeader } from './wire.js'

/** First byte 0x9c: no HTTP request starts with it (a method is ASCII), so one port serves both. */
export const MSG_MAGIC = 0x9c4c5052
/** 2: replies carry an auth token. */
export const MSG_VERSION = 2
export const REQ_FIXED = 52
export const REPLY_FIXED = 52
const TYPE_REQUEST = 1
const TYPE_REPLY = 2
/** Request and reply flag bits; bit 15 of a request says a transno is carried (a replay). */
const HAS_TRANSNO = 0x8000

/** The largest request body (JSON and bulk) a front takes, on either transport. */
export const MAX_REQUEST_JSON = 1024 * 1024
export const MAX_BODY = MAX_IO + MAX_REQUEST_JSON
/** A reply's JSON may list a directory page or a configuration: larger than any request's. */
export const MAX_REPLY_JSON = 16 * 1024 * 1024

/**
 * Op codes in the order of the catalogue (OPS): part of the wire version, so a new op goes at
 * the end of OPS. Code 0 is never used, so a zeroed header names no op.
 */
const OP_NAMES = Object.keys(OPS)
const OP_CODES = new Map(OP_NAMES.map((name, i) => [name, i + 1]))

export function opCode(op: string): number {
  const c = OP_CODES.get(op)
  if (c === undefined) throw new FrameError(`unknown op '${op}'`)
  return c
}

/** A malformed frame: the connection cannot be trusted to be in step any more. `xid` when the header said it. */
export class MsgError extends FrameError {
  constructor(
    message: string,
    readonly xid = 0,
  ) {
    super(message)
  }
}

function putU64(b: Buffer, at: number, v: number): void {
  b.writeUInt32BE(Math.floor(v / 0x1_0000_0000), at)
  b.writeUInt32BE(v >>> 0, at + 4)
}

function getU64(b: Buffer, at: number, what: string, xid = 0): number {
  const hi = b.readUInt32BE(at)
  if (hi >= 0x20_0000) throw new MsgError(`${what} is out of range`, xid)
  return hi * 0x1_0000_0000 + b.readUInt32BE(at + 4)
}

function flagBits<F extends string>(names: readonly F[], flags: readonly F[]): number {
  let bits = 0
  for (const f of flags) bits |= 1 << names.indexOf(f)
  return bits
}

function flagNames<F extends string>(names: readonly F[], bits: number): F[] {
  return names.filter((_, i) => bits & (1 << i))
}

function prelude(b: Buffer, type: number, flags: number, json: number, bulk: number): void {
  b.writeUInt32BE(MSG_MAGIC, 0)
  b.writeUInt8(MSG_VERSION, 4)
  b.writeUInt8(type, 5)
  b.writeUInt16BE(flags, 6)
  b.writeUInt32BE(json, 8)
  b.writeUInt32BE(bulk, 12)
}

function shortString(s: string | undefined, what: string, max = 255): Buffer {
  const b = Buffer.from(s ?? '')
  if (b.length > max) throw new FrameError(`${what} is longer than ${max} bytes`)
  return b
}

/** A request as its pieces: the fixed header with the strings in one buffer, the JSON, then the bulk as given (never copied). */
export function encodeRequest(h: ReqHeader, body: unknown, bulk?: Bulk, auth?: string): Buffer[] {
  const target = shortString(h.target, 'target name')
  const client = shortString(h.client, 'client uuid')
  const handle = shortString(h.handle, 'handle')
  const token = shortString(auth, 'auth token')
  const json = jsonBytes(body)
  const parts = bulkParts(bulk)
  const head = Buffer.allocUnsafe(REQ_FIXED + target.length + client.length + handle.length + token.length)
  const flags = flagBits(REQ_FLAGS, h.flags) | (h.transno !== undefined ? HAS_TRANSNO : 0)
  prelude(head, TYPE_REQUEST, flags, json.length, totalLength(parts))
  putU64(head, 16, h.xid)
  putU64(head, 24, h.lastXid)
  putU64(head, 32, h.transno ?? 0)
  head.writeUInt32BE(h.connCnt, 40)
  head.writeUInt16BE(opCode(h.op), 44)
  head.writeUInt8(target.length, 46)
  head.writeUInt8(client.length, 47)
  head.writeUInt8(handle.length, 48)
  head.writeUInt8(token.length, 49)
  head.writeUInt16BE(0, 50)
  let at = REQ_FIXED
  at += target.copy(head, at)
  at += client.copy(head, at)
  at += handle.copy(head, at)
  token.copy(head, at)
  return [head, json, ...parts]
}

/** `code`: the front's verdict (see the file's comment). The error message is cut to fit its length field. */
export function encodeReply(xid: number, code: number, r: ReplyHeader, body: unknown, bulk?: Bulk, auth?: string): Buffer[] {
  const error = Buffer.from(r.error ?? '').subarray(0, 0xffff)
  const token = shortString(auth, 'auth token')
  const json = jsonBytes(body)
  const parts = bulkParts(bulk)
  const head = Buffer.allocUnsafe(REPLY_FIXED + error.length + token.length)
  prelude(head, TYPE_REPLY, flagBits(REPLY_FLAGS, r.flags), json.length, totalLength(parts))
  putU64(head, 16, xid)
  putU64(head, 24, r.transno)
  putU64(head, 32, r.lastCommitted)
  head.writeInt32BE(r.status, 40)
  head.writeUInt16BE(code, 44)
  head.writeUInt16BE(error.length, 46)
  head.writeUInt8(token.length, 48)
  head.writeUInt8(0, 49)
  head.writeUInt16BE(0, 50)
  error.copy(head, REPLY_FIXED)
  token.copy(head, REPLY_FIXED + error.length)
  return [head, json, ...parts]
}

/** A request's header: what is checked before its body is read. */
export interface RequestHead {
  /** As framed; the front checks its fields (checkReqHeader) as it does an HTTP request's. */
  h: ReqHeader
  /** The shared key's token, checked by the front with the header. */
  auth?: string
}

export interface RequestMsg<V = undefined> extends RequestHead {
  type: 'request'
  /** The body's JSON text, parsed by the front where a failure is answered like any bad argument. */
  json: Buffer
  bulk: Buffer[]
  /** What the reader's head check said (HeadCheck); with `readBody` false, json and bulk are empty. */
  verdict?: V
}

/**
 * Asked as soon as a request's header is in, before any of its body is buffered (the front
 * checks the shared key's MAC there): a verdict that travels with the message, and whether the
 * body is wanted. An unwanted body is dropped as it arrives, never held.
 */
export type HeadCheck<V> = (head: RequestHead) => { verdict: V; readBody: boolean }

export interface ReplyMsg {
  type: 'reply'
  xid: number
  code: number
  header: ReplyHeader
  auth?: string
  json: Buffer
  bulk: Buffer[]
}

export interface MsgLimits {
  json: number
  bulk: number
}

export const REQUEST_LIMITS: MsgLimits = { json: MAX_REQUEST_JSON, bulk: MAX_IO }
export const REPLY_LIMITS: MsgLimits = { json: MAX_REPLY_JSON, bulk: MAX_IO }

interface Pending<V> {
  fixed: Buffer
  /** Bytes of the strings between the fixed header and the JSON (the header's fields are checked). */
  strings: number
  json: number
  bulk: number
  /** Once the head check ran: the head, its verdict, and the body bytes still to drop (if unwanted). */
  head?: RequestHead
  verdict?: V
  dropping?: number
}

/**
 * Cuts a byte stream into messages of one type. Chunks are kept as the socket gave them: the
 * bulk of a message comes out as views of them, never joined. Throws MsgError on the first
 * malformed header; the reader is then of no further use (the stream is out of step).
 */
export class MsgReader<V = undefined> {
  private chunks: Buffer[] = []
  private have = 0
  private cur: Pending<V> | null = null

  constructor(
    private readonly type: 'request' | 'reply',
    private readonly limits: MsgLimits,
    /** Requests only: the check of each header before its body is read. */
    private readonly headCheck?: HeadCheck<V>,
  ) {}

  /** Bytes received and not yet given out as messages. */
  get buffered(): number {
    return this.have
  }

  /** The message under way: null between messages; its declared length (past the fixed header) once that header is read. */
  get underway(): { declared?: number } | null {
    if (this.cur) return { declared: this.cur.strings + this.cur.json + this.cur.bulk }
    return this.have ? {} : null
  }

  /**
   * Every message `chunk` completes goes to `each`, in order, before a malformed one throws.
   * `each` returning false stops there: the rest stays buffered, unparsed (its headers
   * unchecked), until the next push, which may be of an empty chunk.
   */
  push(chunk: Buffer, each: (m: RequestMsg<V> | ReplyMsg) => unknown): void {
    if (chunk.length) {
      this.chunks.push(chunk)
      this.have += chunk.length
    }
    for (;;) {
      if (!this.cur) {
        const fixed = this.type === 'request' ? REQ_FIXED : REPLY_FIXED
        if (this.have < fixed) break
        this.cur = this.header(this.take(fixed))
      }
      const m = this.cur
      if (this.headCheck && !m.head) {
        if (this.have < m.strings) break
        m.head = requestHead(m.fixed, this.take(m.strings))
        m.strings = 0
        const { verdict, readBody } = this.headCheck(m.head)
        m.verdict = verdict
        if (!readBody) m.dropping = m.json + m.bulk
      }
      if (m.dropping !== undefined) {
        const n = Math.min(this.have, m.dropping)
        this.drop(n)
        m.dropping -= n
        if (m.dropping > 0) break
        this.cur = null
        if (each({ type: 'request', ...m.head!, json: Buffer.alloc(0), bulk: [], verdict: m.verdict }) === false) return
        continue
      }
      const { strings, json, bulk } = m
      if (this.have < strings + json + bulk) break
      this.cur = null
      const str = this.take(strings)
      const body = this.take(json)
      const head = m.head ?? (this.type === 'request' ? requestHead(m.fixed, str) : undefined)
      if (each(head ? { type: 'request', ...head, json: body, bulk: this.takeChunks(bulk), verdict: m.verdict } : reply(m, str, body, this.takeChunks(bulk))) === false) return
    }
  }

  private header(b: Buffer): Pending<V> {
    const magic = b.readUInt32BE(0)
    if (magic !== MSG_MAGIC) throw new MsgError(`bad magic 0x${magic.toString(16)}`)
    const version = b.readUInt8(4)
    if (version !== MSG_VERSION) throw new MsgError(`unsupported message version ${version} (this node speaks ${MSG_VERSION})`)
    const type = b.readUInt8(5)
    const want = this.type === 'request' ? TYPE_REQUEST : TYPE_REPLY
    const xid = getU64(b, 16, 'xid')
    if (type !== want) throw new MsgError(`message type ${type} where a ${this.type} was expected`, xid)
    const json = b.readUInt32BE(8)
    const bulk = b.readUInt32BE(12)
    if (json > this.limits.json) throw new MsgError(`JSON of ${json} bytes exceeds ${this.limits.json}`, xid)
    if (bulk > this.limits.bulk) throw new MsgError(`bulk of ${bulk} bytes exceeds ${this.limits.bulk}`, xid)
    if (this.type === 'reply') {
      getU64(b, 24, 'transno', xid)
      getU64(b, 32, 'last_committed', xid)
      return { fixed: b, strings: b.readUInt16BE(46) + b.readUInt8(48), json, bulk }
    }
    const flags = b.readUInt16BE(6)
    if (flags & ~(HAS_TRANSNO | ((1 << REQ_FLAGS.length) - 1))) throw new MsgError(`unknown request flags 0x${flags.toString(16)}`, xid)
    getU64(b, 24, 'last_xid', xid)
    getU64(b, 32, 'transno', xid)
    return { fixed: b, strings: b.readUInt8(46) + b.readUInt8(47) + b.readUInt8(48) + b.readUInt8(49), json, bulk }
  }

  /** The next n bytes as one buffer: a view when they lie in one chunk, else joined (headers and JSON only). */
  private take(n: number): Buffer {
    if (n === 0) return Buffer.alloc(0)
    const first = this.chunks[0]
    let out: Buffer
    if (first && first.length >= n) out = first.subarray(0, n)
    else {
      out = Buffer.allocUnsafe(n)
      copyFrom(this.chunks, out, 0, 0, n)
    }
    this.drop(n)
    return out
  }

  private takeChunks(n: number): Buffer[] {
    const out = slice(this.chunks, 0, n)
    this.drop(n)
    return out
  }

  private drop(n: number): void {
    this.have -= n
    while (n > 0) {
      const c = this.chunks[0]!
      if (c.length <= n) {
        n -= c.length
        this.chunks.shift()
      } else {
        this.chunks[0] = c.subarray(n)
        n = 0
      }
    }
  }
}

function requestHead(b: Buffer, str: Buffer): RequestHead {
  const flags = b.readUInt16BE(6)
  const code = b.readUInt16BE(44)
  // An unknown code is answered by the front like an unknown op name over HTTP.
  const op = OP_NAMES[code - 1] ?? `#${code}`
  const lens = [b.readUInt8(46), b.readUInt8(47), b.readUInt8(48), b.readUInt8(49)]
  const text = (from: number, n: number) => str.toString('utf8', from, from + n)
  const authAt = lens[0]! + lens[1]! + lens[2]!
  const h: ReqHeader = {
    target: text(0, lens[0]!),
    op,
    client: text(lens[0]!, lens[1]!),
    handle: lens[2] ? text(lens[0]! + lens[1]!, lens[2]) : undefined,
    connCnt: b.readUInt32BE(40),
    xid: getU64(b, 16, 'xid'),
    lastXid: getU64(b, 24, 'last_xid'),
    flags: flagNames<ReqFlag>(REQ_FLAGS, flags),
    transno: flags & HAS_TRANSNO ? getU64(b, 32, 'transno') : undefined,
  }
  return { h, auth: lens[3] ? text(authAt, lens[3]) : undefined }
}

function reply(m: Pending<unknown>, str: Buffer, json: Buffer, bulk: Buffer[]): ReplyMsg {
  const b = m.fixed
  const xid = getU64(b, 16, 'xid')
  const errorLen = b.readUInt16BE(46)
  const error = errorLen ? str.toString('utf8', 0, errorLen) : undefined
  const auth = str.length > errorLen ? str.toString('utf8', errorLen) : undefined
  const header: ReplyHeader = {
    status: b.readInt32BE(40),
    transno: getU64(b, 24, 'transno'),
    lastCommitted: getU64(b, 32, 'last_committed'),
    flags: flagNames<ReplyFlag>(REPLY_FLAGS, b.readUInt16BE(6)),
    error,
  }
  return { type: 'reply', xid, code: b.readUInt16BE(44), header, auth, json, bulk }
}

/**
 * A message's pieces leave together, the bulk as it is (never copied), with every other
 * message sent on the socket in the same tick: one writev for all, as a syscall per message
 * was the larger part of a small RPC's cost with many in flight.
 */
export function sendMsg(sock: Socket, parts: readonly Buffer[]): void {
  if (!sock.writableCorked) {
    sock.cork()
    process.nextTick(() => sock.uncork())
  }
  for (const p of parts) sock.write(p)
}

/** The body's JSON text as a value. */
export function parseJson(json: Buffer): unknown {
  try {
    return JSON.parse(json.toString('utf8'))
  } catch {
    throw new FrameError('message JSON does not parse')
  }
}
