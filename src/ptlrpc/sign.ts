import { AuthError, type SignedRequest, type SigningKey, signRequest, verifyReply } from '../protocol/auth.js'
import type { ReplyHeader, ReqHeader } from '../protocol/wire.js'
import { TransportError } from './lnd.js'

/**
 * A client's side of the shared key (protocol/auth.ts), for either LND: each request signed
 * as it leaves (a resend is signed afresh: new nonce, new time), and each reply that carries
 * data checked against its own request before anything of it is used. A refusal (not 200)
 * is taken unsigned: it carries no data, and whoever could forge one could as well cut the
 * connection.
 */
export class RequestSigner {
  constructor(
    private readonly key: SigningKey,
    private readonly now: () => number = Date.now,
  ) {}

  sign(h: ReqHeader, json: Buffer, bulk: readonly Buffer[]): SignedRequest {
    return signRequest(this.key, h, json, bulk, this.now())
  }

  /** Throws TransportError 'auth' for a served reply that is not the signed answer to `req`. */
  check(nid: string, req: SignedRequest, xid: number, code: number, r: ReplyHeader, token: string | undefined, json: Buffer, bulk: readonly Buffer[]): void {
    if (code !== 200) return
    try {
      verifyReply(this.key.secret, req.nonce, xid, code, r, token, json, bulk)
    } catch (e) {
      if (!(e instanceof AuthError)) throw e
      throw new TransportError('auth', `EACCES: reply ${xid} from ${nid} refused: ${e.message}`)
    }
  }
}
