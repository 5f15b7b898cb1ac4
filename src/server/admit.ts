import type { Logger } from '../common/log.js'
import { errnoOf, errnoName, type ErrnoName } from '../protocol/errno.js'
import { OPS, isOpName } from '../protocol/ops.js'
import { FrameError, type ReplyHeader, type ReqBody, type ReqHeader } from '../protocol/wire.js'
import type { InflightCap } from './limits.js'
import type { Target } from './target/target.js'

/** What the front needs of a target (`lproxy selftest` serves a stand-in through the same front). */
export type FrontTarget = Pick<Target, 'kind' | 'handle'>

export class BadRequest extends Error {
  constructor(
    /** The front's verdict, in HTTP's numbers on both transports (see protocol/msg.ts). */
    readonly code: number,
    readonly errno: ErrnoName,
    message: string,
  ) {
    super(message)
  }
}

/** What goes back: the verdict code, the ptlrpc reply header, the body and its bulk. */
export interface Answer {
  code: number
  header: ReplyHeader
  body: unknown
  bulk?: Buffer
}

/** A request as a transport delivers it: decoders, run here so that a failure is answered in one way. */
export interface Incoming {
  header: () => ReqHeader
  body: () => { json: unknown; bulk: Buffer[] }
  /** The NID of the connection's peer, from the socket (never from the request): root_squash's nosquash_nids. */
  peer?: string
  /** The front's cap on requests in flight per export (limits.ts). */
  inflight?: InflightCap
}

/** The NID a connection comes from, on the network type of the transport it speaks (IPv4-mapped addresses as IPv4). */
export function peerNid(sock: { remoteAddress?: string }, net: 'tcp' | 'http'): string | undefined {
  const a = sock.remoteAddress
  return a && `${a.replace(/^::ffff:/, '')}@${net}`
}

/**
 * Every check a request passes before a target sees it, whichever transport brought it:
 * header, target, op, the op served by the target's kind, body schema, bulk allowed. (Sizes
 * are checked by each transport before it buffers a body, against protocol/msg.ts's limits.)
 * The HMAC of a shared key will be checked here too, over the header and the body.
 */
export async function answer(targets: Map<string, FrontTarget>, req: Incoming, log: Logger): Promise<Answer> {
  try {
    const h = decode(req.header)
    const target = targets.get(h.target)
    if (!target) throw new BadRequest(404, 'ENODEV', `target '${h.target}' is not served by this node`)
    if (!isOpName(h.op)) throw new BadRequest(400, 'EOPNOTSUPP', `unknown op '${h.op}'`)
    const spec = OPS[h.op]
    if (!(spec.kinds as readonly string[]).includes(target.kind)) throw new BadRequest(400, 'EOPNOTSUPP', `op '${h.op}' is not served by ${target.kind} targets`)
    const { json, bulk } = decode(req.body)
    const rb = json as ReqBody
    if (typeof rb !== 'object' || rb === null) throw new BadRequest(400, 'EPROTO', 'request body must be an object')
    const parsed = spec.args.safeParse(rb.a)
    if (!parsed.success) {
      const issue = parsed.error.issues[0]
      // A schema may name the errno of its refusal (an offset past the maximum file size: EFBIG).
      const errno = issue && 'params' in issue && issue.params?.errno === 'EFBIG' ? 'EFBIG' : 'EINVAL'
      throw new BadRequest(400, errno, `invalid arguments for ${h.op}: ${issue ? `${issue.path.join('.') || 'args'}: ${issue.message}` : 'malformed'}`)
    }
    if (bulk.length && !('bulkIn' in spec)) throw new BadRequest(400, 'EPROTO', `op '${h.op}' carries no bulk data`)
    const release = req.inflight?.enter(h.target, h.client)
    let reply
    try {
      reply = await target.handle(h, parsed.data, rb.r, bulk, req.peer)
    } finally {
      release?.()
    }
    const { http: code, body, bulk: out, ...header } = reply
    return { code, header, body, bulk: out }
  } catch (e) {
    if (e instanceof BadRequest) return refusal(e)
    log.error({ err: e }, 'request handling failed')
    return refusal(new BadRequest(500, 'EIO', `internal error: ${(e as Error).message}`))
  }
}

export function refusal(e: BadRequest): Answer {
  const status = -errnoOf(e.errno)
  return { code: e.code, header: { status, transno: 0, lastCommitted: 0, flags: [], error: e.message }, body: { error: e.message, errno: errnoName(status) } }
}

function decode<T>(fn: () => T): T {
  try {
    return fn()
  } catch (e) {
    if (e instanceof FrameError) throw new BadRequest(400, 'EPROTO', e.message)
    throw e
  }
}
