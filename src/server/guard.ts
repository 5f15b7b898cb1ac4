import type { Clock } from '../common/clock.js'
import { KEY_CLASSES, type KeyClass, type KeyFile, deriveKey } from '../common/keyfile.js'
import {
  AUTH_WINDOW_MS, AuthError, type RequestProof, checkBody, classAllows, opClass, openRequest, signReply,
} from '../protocol/auth.js'
import type { ReplyHeader, ReqHeader } from '../protocol/wire.js'
import { NonceCache } from './nonces.js'

/**
 * A keyed target's check of what it receives and signature of what it answers: the keys of
 * every class, derived from the filesystem's master key (common/keyfile.ts), and the nonces
 * seen in the time window. One per target directory (an MGS sharing the MDT's shares it).
 */
export class Guard {
  private readonly keys: Record<KeyClass, Buffer>
  private readonly nonces: NonceCache

  constructor(
    master: KeyFile,
    private readonly clock: Pick<Clock, 'wallNow'>,
    nonces = new NonceCache(),
  ) {
    this.keys = Object.fromEntries(KEY_CLASSES.map((c) => [c, deriveKey(master, c).secret])) as Record<KeyClass, Buffer>
    this.nonces = nonces
  }

  /** The header's MAC, the op's class, the time window, the nonce: before any of the body is read. */
  admitHeader(h: ReqHeader, token: string | undefined): RequestProof {
    const p = openRequest(token, h, (c) => this.keys[c])
    const need = opClass(h.op)
    if (!classAllows(need, p.cls)) throw new AuthError('class', `${h.op} needs the filesystem's ${need} key; the request is signed with the ${p.cls} key`)
    const now = this.clock.wallNow()
    if (Math.abs(now - p.ts) > AUTH_WINDOW_MS)
      throw new AuthError('stale', `the request was signed ${Math.round((now - p.ts) / 1000)} s from this server's clock, outside ±${AUTH_WINDOW_MS / 1000} s`)
    if (!this.nonces.admit(p.nonce, p.ts, now)) {
      if (p.ts > this.nonces.refusedUpTo) throw new AuthError('replay', 'replayed request (its nonce was seen already)')
      // Past its cap the cache forgot nonces younger than the window: it cannot tell this one from a replay.
      throw new AuthError(
        'stale',
        `the request was signed ${Math.round((now - p.ts) / 1000)} s before this server's clock, before the oldest request it can still tell from a replay (it keeps the newest ${this.nonces.cap} nonces, signed since ${Math.round((now - this.nonces.refusedUpTo) / 1000)} s ago): is the client's clock behind?`,
      )
    }
    return p
  }

  admitBody(p: RequestProof, json: Buffer, bulk: readonly Buffer[]): void {
    checkBody(p, this.keys[p.cls], json, bulk)
  }

  signReply(p: RequestProof, xid: number, code: number, r: ReplyHeader, json: Buffer, bulk: readonly Buffer[]): string {
    return signReply(this.keys[p.cls], p.nonce, xid, code, r, json, bulk)
  }
}
