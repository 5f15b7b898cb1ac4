/**
 * Shared-key authentication of RPCs (Lustre's SSK, Heartbeat's authkeys), at the ptlrpc
 * message layer so both transports carry the same token: the HTTP header `x-lp-auth`, or
 * the binary header's auth string. A request's token is
 *   v3.<class>.<timestamp ms>.<nonce>.<body digest>.<MAC>
 * the MAC (HMAC-SHA256 with the class's key) covering the header's identity fields, the
 * class, timestamp, nonce and the body's digest: the header is checked before the body is
 * read, the body against the digest once it is. A reply's token `v3.<MAC>` is bound to its
 * request's nonce, so no reply can be answered to another request; a reply is read whole
 * before it is used, so its one HMAC covers its header fields, JSON and bulk together.
 * The request's body digest is SHA-256 over the JSON's length (u32 BE), the JSON, the bulk's
 * length (u64 BE) and the bulk: up to 64 KiB its bytes, past that a GMAC of it (AES-256-GCM's
 * tag over it, nothing encrypted) under a key derived for this message alone from the class
 * key, its nonce and its direction; a reply's bulk enters its HMAC the same way. GMAC runs at
 * three times SHA-256's speed here (SHA-NI), but setting one up costs more than hashing a few
 * KiB. Each GMAC key authenticates one message, so a fixed IV never meets a second one, and
 * without the class key nobody can derive it. The bulk's length, covered first, says which.
 */
import { type Hash, type Hmac, createCipheriv, createHash, createHmac, timingSafeEqual } from 'node:crypto'
import { totalLength } from '../common/chunks.js'
import { randomText } from '../common/random.js'
import { KEY_CLASSES, type KeyClass } from '../common/keyfile.js'
import type { ReplyHeader, ReqHeader } from './wire.js'

export type { KeyClass } from '../common/keyfile.js'

/** A key a request is signed with, and the class it proves. */
export interface SigningKey {
  cls: KeyClass
  secret: Buffer
}

/**
 * Requests signed further than this from the server's clock are refused: Kerberos' default
 * allowance for clock skew, wide for hosts kept by NTP, and the span a captured request could
 * be replayed in if the nonce cache did not remember it.
 */
export const AUTH_WINDOW_MS = 5 * 60_000

const VERSION = 'v3'
const NONCE_BYTES = 16
const B64 = '[A-Za-z0-9_-]'
const REQ_TOKEN = new RegExp(`^${VERSION}\\.(${KEY_CLASSES.join('|')})\\.(\\d{1,15})\\.(${B64}{22})\\.(${B64}{43})\\.(${B64}{43})$`)
const REPLY_TOKEN = new RegExp(`^${VERSION}\\.(${B64}{43})$`)

/** Why a token was refused: the server answers 401 (EACCES) for all but `class` (403, EPERM). */
export type AuthFailure = 'missing' | 'unkeyed' | 'malformed' | 'class' | 'mac' | 'stale' | 'replay' | 'body'

export class AuthError extends Error {
  constructor(
    readonly reason: AuthFailure,
    message: string,
  ) {
    super(message)
  }
}

/**
 * The key class an op needs. Configuration changes need the administrator's key; what only
 * servers do (registering a target, the OSP's destroys and orphan lists) needs the node key;
 * everything else any key of the filesystem.
 */
export function opClass(op: string): KeyClass {
  if (op === 'mgs_set_param') return 'admin'
  if (op === 'mgs_target_reg' || op === 'ost_destroy' || op === 'ost_list') return 'node'
  return 'fs'
}

/** Whether a request signed with `signer` may run an op that needs `need`. */
export function classAllows(need: KeyClass, signer: KeyClass): boolean {
  return need === 'fs' || need === signer
}

type Direction = 'req' | 'rep'

const GMAC_IV = Buffer.alloc(12)

/**
 * Bulk up to this size enters a MAC as its bytes. A GMAC's setup (an HMAC for its key, an AES
 * key schedule, a GCM context) cost 160 us per 4 KiB write in the mount daemon's CPU profile of
 * the metadata mix, where hashing 4 KiB costs a few; past 64 KiB the GMAC's speed wins.
 */
const WHOLE_BULK_MAX = 64 * 1024

/** The bulk into a hash: its bytes if small, else its GMAC under this message's own key. */
function addBulk(h: Hash | Hmac, secret: Buffer, nonce: string, dir: Direction, bulk: readonly Buffer[], bytes: number): void {
  if (bytes > WHOLE_BULK_MAX) h.update(bulkTag(secret, nonce, dir, bulk))
  else for (const b of bulk) h.update(b)
}

/** The GMAC of the bulk under this message's own key. */
function bulkTag(secret: Buffer, nonce: string, dir: Direction, bulk: readonly Buffer[]): Buffer {
  const key = createHmac('sha256', secret).update(`lproxy-bulk-${VERSION}\n${dir}\n${nonce}`).digest()
  const g = createCipheriv('aes-256-gcm', key, GMAC_IV)
  for (const b of bulk) g.setAAD(b)
  g.final()
  return g.getAuthTag()
}

/** The digest a request's MAC covers: its JSON, and its bulk (see above). */
function bodyDigest(secret: Buffer, nonce: string, json: Buffer, bulk: readonly Buffer[] = []): Buffer {
  const len = Buffer.allocUnsafe(12)
  len.writeUInt32BE(json.length, 0)
  const bulkBytes = totalLength(bulk)
  len.writeUInt32BE(Math.floor(bulkBytes / 2 ** 32), 4)
  len.writeUInt32BE(bulkBytes >>> 0, 8)
  const h = createHash('sha256').update(len.subarray(0, 4)).update(json).update(len.subarray(4))
  addBulk(h, secret, nonce, 'req', bulk, bulkBytes)
  return h.digest()
}

function requestMac(secret: Buffer, fields: unknown[]): Buffer {
  return createHmac('sha256', secret).update(`lproxy-req-${VERSION}\n${JSON.stringify(fields)}`).digest()
}

function reqFields(h: ReqHeader, cls: KeyClass, ts: number, nonce: string, digest: string): unknown[] {
  const flags = [...h.flags].sort().join(',')
  return [h.target, h.op, h.client, h.handle ?? '', h.connCnt, h.xid, h.lastXid, flags, h.transno ?? -1, cls, ts, nonce, digest]
}

function same(a: Buffer, b: Buffer): boolean {
  return a.length === b.length && timingSafeEqual(a, b)
}

export interface SignedRequest {
  token: string
  nonce: string
}

export function signRequest(key: SigningKey, h: ReqHeader, json: Buffer, bulk: readonly Buffer[], now: number): SignedRequest {
  const nonce = randomText(NONCE_BYTES, 'base64url')
  const d = bodyDigest(key.secret, nonce, json, bulk).toString('base64url')
  const m = requestMac(key.secret, reqFields(h, key.cls, now, nonce, d)).toString('base64url')
  return { token: `${VERSION}.${key.cls}.${now}.${nonce}.${d}.${m}`, nonce }
}

/** What a request's valid token proves: who signed (the class), when, and the body it signed. */
export interface RequestProof {
  cls: KeyClass
  ts: number
  nonce: string
  digest: Buffer
}

/**
 * The header's MAC, checked before anything of the body is read. Time and nonce are the
 * verifier's to judge (it has the clock and the cache): see server/guard.ts.
 */
export function openRequest(token: string | undefined, h: ReqHeader, keyOf: (cls: KeyClass) => Buffer): RequestProof {
  if (token === undefined) throw new AuthError('missing', 'this filesystem has a shared key: the request carries no authentication')
  const m = REQ_TOKEN.exec(token)
  if (!m) throw new AuthError('malformed', 'malformed authentication token')
  const [, cls, tsText, nonce, d, given] = m as unknown as [string, KeyClass, string, string, string, string]
  const ts = Number(tsText)
  if (!same(requestMac(keyOf(cls), reqFields(h, cls, ts, nonce, d)), Buffer.from(given, 'base64url')))
    throw new AuthError('mac', `the request's MAC does not verify with the filesystem's ${cls} key`)
  return { cls, ts, nonce, digest: Buffer.from(d, 'base64url') }
}

/** The body against the digest the header signed (`secret`: the key of the class it proved). */
export function checkBody(p: RequestProof, secret: Buffer, json: Buffer, bulk: readonly Buffer[]): void {
  if (!same(bodyDigest(secret, p.nonce, json, bulk), p.digest)) throw new AuthError('body', 'the request body does not match its signed digest')
}

/** A reply's MAC: its header fields with its request's nonce, the lengths, then its JSON and its bulk (as a request's), in one HMAC. */
function replyMac(secret: Buffer, nonce: string, xid: number, code: number, r: ReplyHeader, json: Buffer, bulk: readonly Buffer[]): Buffer {
  const bulkBytes = totalLength(bulk)
  const fields = [nonce, xid, code, r.status, r.transno, r.lastCommitted, [...r.flags].sort().join(','), r.error ?? '', json.length, bulkBytes]
  const h = createHmac('sha256', secret).update(`lproxy-rep-${VERSION}\n${JSON.stringify(fields)}\n`).update(json)
  addBulk(h, secret, nonce, 'rep', bulk, bulkBytes)
  return h.digest()
}

export function signReply(secret: Buffer, nonce: string, xid: number, code: number, r: ReplyHeader, json: Buffer, bulk: readonly Buffer[]): string {
  return `${VERSION}.${replyMac(secret, nonce, xid, code, r, json, bulk).toString('base64url')}`
}

/** A reply to the request signed with `nonce`, as it arrived: its token, header and body, checked all together. */
export function verifyReply(secret: Buffer, nonce: string, xid: number, code: number, r: ReplyHeader, token: string | undefined, json: Buffer, bulk: readonly Buffer[]): void {
  if (token === undefined) throw new AuthError('missing', 'the reply carries no authentication')
  const m = REPLY_TOKEN.exec(token)
  if (!m) throw new AuthError('malformed', 'malformed reply authentication token')
  if (!same(replyMac(secret, nonce, xid, code, r, json, bulk), Buffer.from(m[1]!, 'base64url')))
    throw new AuthError('mac', "the reply's MAC does not verify: forged, signed with another key, or its body altered")
}
