/**
 * The ptlrpc header and body shared by both transports (checkReqHeader is the one check of a
 * request header's fields), and their envelope over HTTP for `@http` NIDs (msg.ts has the
 * binary message of `@tcp` NIDs). Over HTTP the ptlrpc header (who, which connection, xid, transno,
 * flags) travels as HTTP headers so it can be read (and later authenticated) without
 * parsing the body; the body is one frame: a 4-byte big-endian JSON length, the JSON,
 * then the bulk data (OST read/write pages), so bulk is never re-encoded.
 */
import { slice, totalLength } from '../common/chunks.js'

export const RPC_PATH = '/rpc'

/** Frames up to this size are joined and leave in one write with the HTTP head; larger ones (bulk) go as their pieces, never copied. */
export const SMALL_FRAME = 64 * 1024

export const H = {
  target: 'x-lp-target',
  op: 'x-lp-op',
  client: 'x-lp-client',
  handle: 'x-lp-handle',
  connCnt: 'x-lp-conn-cnt',
  xid: 'x-lp-xid',
  lastXid: 'x-lp-last-xid',
  flags: 'x-lp-flags',
  transno: 'x-lp-transno',
  /** The shared key's token (protocol/auth.ts), on requests and replies of a keyed filesystem. */
  auth: 'x-lp-auth',
  status: 'x-lp-status',
  lastCommitted: 'x-lp-last-committed',
  error: 'x-lp-error',
} as const

export type ReqFlag = 'replay' | 'resend' | 'replay_done'
export type ReplyFlag = 'recovering' | 'stale_conn'

/** The ptlrpc header of a request. */
export interface ReqHeader {
  target: string
  op: string
  client: string
  handle?: string
  connCnt: number
  xid: number
  lastXid: number
  flags: ReqFlag[]
  /** The original transno, on a replay. */
  transno?: number
}

export interface ReplyHeader {
  status: number
  transno: number
  lastCommitted: number
  flags: ReplyFlag[]
  error?: string
}

export interface ReqBody {
  a: unknown
  /** On a replay: the original reply, so the target reproduces the same ids (fid, open handle). */
  r?: unknown
}

/** Bulk data: one buffer, or the pieces it was gathered from (sent as they are, never joined). */
export type Bulk = Uint8Array | readonly Uint8Array[]

export function bulkParts(b: Bulk | undefined): Buffer[] {
  if (!b) return []
  const list = Array.isArray(b) ? (b as readonly Uint8Array[]) : [b as Uint8Array]
  return list.filter((p) => p.byteLength).map((p) => (Buffer.isBuffer(p) ? p : Buffer.from(p.buffer, p.byteOffset, p.byteLength)))
}

export function bulkLength(b: Bulk | undefined): number {
  if (!b) return 0
  return Array.isArray(b) ? totalLength(b as readonly Uint8Array[]) : (b as Uint8Array).byteLength
}

/**
 * A body's JSON as bytes: encoded here, or already (a Buffer: no JSON body is one), so that
 * what is signed is what is sent without encoding it twice.
 */
export function jsonBytes(json: unknown): Buffer {
  return Buffer.isBuffer(json) ? json : Buffer.from(JSON.stringify(json ?? {}))
}

export function encodeFrame(json: unknown, bulk?: Bulk): Buffer[] {
  const text = jsonBytes(json)
  const len = Buffer.allocUnsafe(4)
  len.writeUInt32BE(text.length, 0)
  return [len, text, ...bulkParts(bulk)]
}

export class FrameError extends Error {}

/**
 * A frame as it arrived, in the socket's chunks: the bulk comes back as slices of them, so a
 * large body is never joined into one buffer (only a JSON head split across chunks is).
 */
export function decodeFrameChunks(chunks: readonly Buffer[]): { json: unknown; bulk: Buffer[] } {
  const { json, bulk } = splitFrame(chunks)
  try {
    return { json: JSON.parse(json.toString('utf8')), bulk }
  } catch {
    throw new FrameError('frame JSON does not parse')
  }
}

/** A frame's JSON text (unparsed, as a signature covers it) and its bulk. */
export function splitFrame(chunks: readonly Buffer[]): { json: Buffer; bulk: Buffer[] } {
  const total = totalLength(chunks)
  if (total < 4) throw new FrameError('body too short for a frame')
  const first = chunks[0]!.length >= 4 ? chunks[0]! : Buffer.concat(chunks as Buffer[], 4)
  const n = first.readUInt32BE(0)
  if (n > total - 4) throw new FrameError('frame JSON length exceeds the body')
  const headEnd = 4 + n
  const head = chunks[0]!.length >= headEnd ? chunks[0]! : Buffer.concat(chunks as Buffer[], headEnd)
  return { json: head.subarray(4, headEnd), bulk: slice(chunks, headEnd) }
}

export const REQ_FLAGS: readonly ReqFlag[] = ['replay', 'resend', 'replay_done']
export const REPLY_FLAGS: readonly ReplyFlag[] = ['recovering', 'stale_conn']

export function encodeReqHeader(h: ReqHeader): Record<string, string> {
  const out: Record<string, string> = {
    [H.target]: h.target,
    [H.op]: h.op,
    [H.client]: h.client,
    [H.connCnt]: String(h.connCnt),
    [H.xid]: String(h.xid),
    [H.lastXid]: String(h.lastXid),
  }
  if (h.handle) out[H.handle] = h.handle
  if (h.flags.length) out[H.flags] = h.flags.join(',')
  if (h.transno !== undefined) out[H.transno] = String(h.transno)
  return out
}

type HeaderBag = Record<string, string | string[] | undefined>

function one(headers: HeaderBag, name: string): string | undefined {
  const v = headers[name]
  return Array.isArray(v) ? v[0] : v
}

function uint(headers: HeaderBag, name: string, required: boolean): number | undefined {
  const v = one(headers, name)
  if (v === undefined) {
    if (required) throw new FrameError(`missing header ${name}`)
    return undefined
  }
  if (!/^\d{1,16}$/.test(v)) throw new FrameError(`header ${name} is not an unsigned integer`)
  const n = Number(v)
  if (!Number.isSafeInteger(n)) throw new FrameError(`header ${name} is out of range`)
  return n
}

/** The shared key's token of a request or reply, if it carries one. */
export function authToken(headers: HeaderBag): string | undefined {
  return one(headers, H.auth)
}

export function decodeReqHeader(headers: HeaderBag): ReqHeader {
  const flagText = one(headers, H.flags)
  return checkReqHeader(
    {
      target: one(headers, H.target) ?? '',
      op: one(headers, H.op) ?? '',
      client: one(headers, H.client) ?? '',
      handle: one(headers, H.handle),
      connCnt: uint(headers, H.connCnt, true)!,
      xid: uint(headers, H.xid, true)!,
      lastXid: uint(headers, H.lastXid, true)!,
      flags: (flagText ? flagText.split(',') : []) as ReqFlag[],
      transno: uint(headers, H.transno, false),
    },
    (f) => H[f],
  )
}

/**
 * The checks of a request header that do not depend on how it travelled, shared by both
 * transports (HTTP headers and the binary message): `field` names a field as its
 * transport calls it, in the error.
 */
export function checkReqHeader(h: ReqHeader, field: (f: 'target' | 'op' | 'client' | 'handle' | 'flags') => string = (f) => f): ReqHeader {
  if (!h.target) throw new FrameError(`missing header ${field('target')}`)
  if (!h.op) throw new FrameError(`missing header ${field('op')}`)
  if (!/^[A-Za-z0-9_.:-]{1,128}$/.test(h.client)) throw new FrameError(`missing or invalid header ${field('client')}`)
  for (const f of h.flags) if (!REQ_FLAGS.includes(f)) throw new FrameError(`unknown request flag '${f}'`)
  if (h.handle !== undefined && !/^[0-9a-f]{16}$/.test(h.handle)) throw new FrameError(`invalid header ${field('handle')}`)
  return h
}

export function encodeReplyHeader(h: ReplyHeader): Record<string, string> {
  const out: Record<string, string> = {
    [H.status]: String(h.status),
    [H.transno]: String(h.transno),
    [H.lastCommitted]: String(h.lastCommitted),
  }
  if (h.flags.length) out[H.flags] = h.flags.join(',')
  // Well-formed first: a message may quote a request's string holding a lone surrogate, which encodeURIComponent throws on.
  if (h.error) out[H.error] = encodeURIComponent(h.error.toWellFormed())
  return out
}

export function decodeReplyHeader(headers: HeaderBag): ReplyHeader {
  // Number() would read '' or ' ' as 0, a success.
  const text = one(headers, H.status)
  if (text === undefined || !/^-?\d{1,4}$/.test(text)) throw new FrameError(`reply without a valid ${H.status}`)
  const status = Number(text)
  const err = one(headers, H.error)
  const flagText = one(headers, H.flags)
  return {
    status,
    transno: uint(headers, H.transno, false) ?? 0,
    lastCommitted: uint(headers, H.lastCommitted, false) ?? 0,
    flags: (flagText ? flagText.split(',') : []) as ReplyFlag[],
    error: err ? safeDecode(err) : undefined,
  }
}

function safeDecode(s: string): string {
  try {
    return decodeURIComponent(s)
  } catch {
    return s
  }
}
