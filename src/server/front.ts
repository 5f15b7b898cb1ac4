import http from 'node:http'
import { totalLength } from '../common/chunks.js'
import type { Logger } from '../common/log.js'
import { errnoOf, errnoName } from '../protocol/errno.js'
import { OPS, isOpName, MAX_IO } from '../protocol/ops.js'
import { RPC_PATH, SMALL_FRAME, FrameError, decodeFrameChunks, decodeReqHeader, encodeFrame, encodeReplyHeader, type ReqBody } from '../protocol/wire.js'
import type { Target, TargetReply } from './target/target.js'

/**
 * The node's HTTP front: decodes and checks every request (header, op, target, body schema)
 * before a target sees it; anything malformed gets a 4xx with an errno and a message.
 */
const MAX_BODY = MAX_IO + 1024 * 1024

class BadRequest extends Error {
  constructor(
    readonly http: number,
    readonly errno: string,
    message: string,
  ) {
    super(message)
  }
}

/** What the front needs of a target (`lproxy selftest` serves a stand-in through the same front). */
export type FrontTarget = Pick<Target, 'kind' | 'handle'>

export function createFront(targets: Map<string, FrontTarget>, log: Logger): http.Server {
  const server = http.createServer({ requestTimeout: 0, keepAliveTimeout: 120_000 }, (req, res) => {
    handle(req, res).catch((e) => {
      log.error({ err: e }, 'request handling failed')
      if (!res.headersSent) send(res, 500, -errnoOf('EIO'), `internal error: ${(e as Error).message}`)
      else res.destroy()
    })
  })
  server.keepAliveTimeout = 120_000
  server.headersTimeout = 60_000

  async function handle(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    let reply: TargetReply
    try {
      if (req.url !== RPC_PATH) throw new BadRequest(404, 'ENOENT', `no such path '${req.url}'; RPCs go to ${RPC_PATH}`)
      if (req.method !== 'POST') throw new BadRequest(405, 'EINVAL', `RPCs are POSTed, not ${req.method}`)
      const body = await readBody(req)
      const h = decode(() => decodeReqHeader(req.headers))
      const target = targets.get(h.target)
      if (!target) throw new BadRequest(404, 'ENODEV', `target '${h.target}' is not served by this node`)
      if (!isOpName(h.op)) throw new BadRequest(400, 'EOPNOTSUPP', `unknown op '${h.op}'`)
      const spec = OPS[h.op]
      if (!(spec.kinds as readonly string[]).includes(target.kind)) throw new BadRequest(400, 'EOPNOTSUPP', `op '${h.op}' is not served by ${target.kind} targets`)
      const { json, bulk } = decode(() => decodeFrameChunks(body))
      const rb = json as ReqBody
      if (typeof rb !== 'object' || rb === null) throw new BadRequest(400, 'EPROTO', 'request body must be an object')
      const parsed = spec.args.safeParse(rb.a)
      if (!parsed.success) {
        const issue = parsed.error.issues[0]
        const errno = issue && 'params' in issue && issue.params?.errno === 'EFBIG' ? 'EFBIG' : 'EINVAL'
        throw new BadRequest(400, errno, `invalid arguments for ${h.op}: ${issue ? `${issue.path.join('.') || 'args'}: ${issue.message}` : 'malformed'}`)
      }
      if (bulk.length && !('bulkIn' in spec)) throw new BadRequest(400, 'EPROTO', `op '${h.op}' carries no bulk data`)
      reply = await target.handle(h, parsed.data, rb.r, bulk, peerNid(req))
    } catch (e) {
      if (!(e instanceof BadRequest)) throw e
      return send(res, e.http, -errnoOf(e.errno as 'EIO'), e.message)
    }
    const parts = encodeFrame(reply.body, reply.bulk)
    const length = totalLength(parts)
    res.writeHead(reply.http, {
      ...encodeReplyHeader(reply),
      'content-type': 'application/x-lproxy',
      'content-length': String(length),
    })
    // A small reply leaves in one write with its head; bulk goes as its pieces, never copied.
    if (length <= SMALL_FRAME) return void res.end(Buffer.concat(parts, length))
    for (const p of parts.slice(0, -1)) res.write(p)
    res.end(parts[parts.length - 1])
  }

  return server
}

/** The NID a request came from: its socket's peer (IPv4-mapped addresses as IPv4). */
function peerNid(req: http.IncomingMessage): string | undefined {
  const a = req.socket.remoteAddress
  return a && `${a.replace(/^::ffff:/, '')}@tcp`
}

function decode<T>(fn: () => T): T {
  try {
    return fn()
  } catch (e) {
    if (e instanceof FrameError) throw new BadRequest(400, 'EPROTO', e.message)
    throw e
  }
}

function send(res: http.ServerResponse, code: number, status: number, message: string): void {
  const parts = encodeFrame({ error: message, errno: errnoName(status) })
  res.writeHead(code, {
    ...encodeReplyHeader({ status, transno: 0, lastCommitted: 0, flags: [], error: message }),
    'content-type': 'application/x-lproxy',
    connection: code >= 500 ? 'close' : 'keep-alive',
  })
  res.end(Buffer.concat(parts))
}

/** The body as the socket delivered it: a large one is never joined into one buffer. */
function readBody(req: http.IncomingMessage): Promise<Buffer[]> {
  return new Promise((resolve, reject) => {
    const declared = Number(req.headers['content-length'] ?? 0)
    if (declared > MAX_BODY) {
      req.resume()
      return reject(new BadRequest(413, 'EFBIG', `request body of ${declared} bytes exceeds ${MAX_BODY}`))
    }
    const chunks: Buffer[] = []
    let n = 0
    req.on('data', (c: Buffer) => {
      n += c.length
      if (n > MAX_BODY) {
        req.destroy()
        reject(new BadRequest(413, 'EFBIG', `request body exceeds ${MAX_BODY} bytes`))
        return
      }
      chunks.push(c)
    })
    req.on('end', () => resolve(chunks))
    req.on('error', reject)
  })
}
