import type { Logger } from '../common/log.js'
import { AuthError, type RequestProof } from '../protocol/auth.js'
import { errnoOf, errnoName, type ErrnoName } from '../protocol/errno.js'
import { parseJson } from '../protocol/msg.js'
import { OPS, type OpSpec, isOpName } from '../protocol/ops.js'
import { FrameError, jsonBytes, type ReplyHeader, type ReqBody, type ReqHeader } from '../protocol/wire.js'
import type { Guard } from './guard.js'
import type { InflightCap } from './limits.js'
import type { Target } from './target/target.js'

/** What the front needs of a target (`lproxy selftest` serves a stand-in through the same front); no guard: a filesystem without a key. */
export type FrontTarget = Pick<Target, 'kind' | 'handle'> & { readonly guard?: Guard | null }

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

/** What goes back: the verdict code, the ptlrpc reply header, the body and its bulk, and the reply's token on a keyed filesystem. */
export interface Answer {
  code: number
  header: ReplyHeader
  body: unknown
  bulk?: Buffer
  auth?: string
}

/** A body as it arrived: the JSON's text (a signature covers it as sent) and the bulk. */
export interface RawBody {
  json: Buffer
  bulk: Buffer[]
}

/** A request as a transport delivers it: decoders, run here so that a failure is answered in one way. */
export interface Incoming {
  header: () => ReqHeader
  /** The shared key's token, as carried. */
  auth?: string
  /** Asked for only once the header passed (HTTP reads the body then, not before). */
  body: () => RawBody | Promise<RawBody>
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

/** A request whose header passed: its target, the op's spec, and the shared key's proof (null: no key). */
export interface Admitted {
  ok: true
  h: ReqHeader
  target: FrontTarget
  spec: OpSpec
  proof: RequestProof | null
}

export type Admission = Admitted | { ok: false; answer: Answer }

/**
 * Every check a request passes before a target sees it, whichever transport brought it:
 * header, target, op, the op served by the target's kind, the shared key's MAC, time and
 * nonce (before the body is read: admitHeader), then the body's digest, body schema, bulk
 * allowed (admitBody). (Sizes are checked by each transport before it buffers a body,
 * against protocol/msg.ts's limits.) On a keyed filesystem the reply is signed for the
 * request's nonce.
 */
export async function answer(targets: Map<string, FrontTarget>, req: Incoming, log: Logger): Promise<Answer> {
  const a = admitHeader(targets, req, log)
  return a.ok ? admitBody(a, req, log) : a.answer
}

/** The checks of the header alone: the binary front runs them as soon as a header is in, so a refused body is never held. */
export function admitHeader(targets: Map<string, FrontTarget>, req: Pick<Incoming, 'header' | 'auth'>, log: Logger): Admission {
  try {
    const h = decode(req.header)
    const target = targets.get(h.target)
    if (!target) throw new BadRequest(404, 'ENODEV', `target '${h.target}' is not served by this node`)
    if (!isOpName(h.op)) throw new BadRequest(400, 'EOPNOTSUPP', `unknown op '${h.op}'`)
    const spec: OpSpec = OPS[h.op]
    if (!(spec.kinds as readonly string[]).includes(target.kind)) throw new BadRequest(400, 'EOPNOTSUPP', `op '${h.op}' is not served by ${target.kind} targets`)
    const proof = authenticate(() => checkToken(target.guard ?? null, h, req.auth))
    return { ok: true, h, target, spec, proof }
  } catch (e) {
    return { ok: false, answer: failed(e, log) }
  }
}

export async function admitBody(a: Admitted, req: Pick<Incoming, 'body' | 'peer' | 'inflight'>, log: Logger): Promise<Answer> {
  const { h, target, spec, proof } = a
  try {
    const raw = await Promise.resolve().then(req.body).catch(frameError)
    if (proof) authenticate(() => target.guard!.admitBody(proof, raw.json, raw.bulk))
    const bulk = raw.bulk
    const rb = decode(() => parseJson(raw.json)) as ReqBody
    if (typeof rb !== 'object' || rb === null) throw new BadRequest(400, 'EPROTO', 'request body must be an object')
    const parsed = spec.args.safeParse(rb.a)
    if (!parsed.success) {
      const issue = parsed.error.issues[0]
      // A schema may name the errno of its refusal (an offset past the maximum file size: EFBIG).
      const errno = issue && 'params' in issue && issue.params?.errno === 'EFBIG' ? 'EFBIG' : 'EINVAL'
      throw new BadRequest(400, errno, `invalid arguments for ${h.op}: ${issue ? `${issue.path.join('.') || 'args'}: ${issue.message}` : 'malformed'}`)
    }
    if (bulk.length && !spec.bulkIn) throw new BadRequest(400, 'EPROTO', `op '${h.op}' carries no bulk data`)
    const release = req.inflight?.enter(h.target, h.client)
    let reply
    try {
      reply = await target.handle(h, parsed.data, rb.r, bulk, req.peer, proof?.cls ?? null)
    } finally {
      release?.()
    }
    const { http: code, body, bulk: out, ...header } = reply
    if (!proof) return { code, header, body, bulk: out }
    const json = jsonBytes(body)
    return { code, header, body: json, bulk: out, auth: target.guard!.signReply(proof, h.xid, code, header, json, out ? [out] : []) }
  } catch (e) {
    return failed(e, log)
  }
}

function failed(e: unknown, log: Logger): Answer {
  if (e instanceof BadRequest) return refusal(e)
  logFailure(e, log)
  return refusal(new BadRequest(500, 'EIO', `internal error: ${(e as Error).message}`))
}

/**
 * A request that failed other than by a refusal: an error here, unless the peer closed the
 * connection while its request was being read (killed, or gave up), which is nothing of ours.
 */
export function logFailure(e: unknown, log: Logger): void {
  if ((e as NodeJS.ErrnoException | undefined)?.code === 'ECONNRESET') log.debug({ err: (e as Error).message }, 'the peer closed its connection before its request was read')
  else log.error({ err: e }, 'request handling failed')
}

export function refusal(e: BadRequest): Answer {
  const status = -errnoOf(e.errno)
  return { code: e.code, header: { status, transno: 0, lastCommitted: 0, flags: [], error: e.message }, body: { error: e.message, errno: errnoName(status) } }
}

function decode<T>(fn: () => T): T {
  try {
    return fn()
  } catch (e) {
    return frameError(e)
  }
}

/** A decoder's failure is the request's fault: 400, EPROTO. */
function frameError(e: unknown): never {
  if (e instanceof FrameError) throw new BadRequest(400, 'EPROTO', e.message)
  throw e
}

/** The header's token: none on a filesystem without a key (one that carries one is refused), else checked. */
function checkToken(guard: Guard | null, h: ReqHeader, token: string | undefined): RequestProof | null {
  if (guard) return guard.admitHeader(h, token)
  if (token !== undefined) throw new AuthError('unkeyed', `the request is authenticated, but ${h.target} has no shared key`)
  return null
}

/** A refused token: 401 and EACCES, nothing executed; a valid key of a class the op does not take, 403 and EPERM. */
function authenticate<T>(fn: () => T): T {
  try {
    return fn()
  } catch (e) {
    if (!(e instanceof AuthError)) throw e
    if (e.reason === 'class') throw new BadRequest(403, 'EPERM', e.message)
    throw new BadRequest(401, 'EACCES', e.message)
  }
}
