import http from 'node:http'
import { totalLength } from '../common/chunks.js'
import type { Logger } from '../common/log.js'
import { MAX_BODY } from '../protocol/msg.js'
import { H, RPC_PATH, SMALL_FRAME, authToken, decodeReqHeader, encodeFrame, encodeReplyHeader, splitFrame } from '../protocol/wire.js'
import { type Answer, BadRequest, type FrontTarget, answer, peerNid, refusal } from './admit.js'

/**
 * The front of `@http` NIDs: an HTTP server that is never listening itself (front.ts hands it
 * the connections that start with an HTTP method). The checks are front.ts's `answer`;
 * only the path, the method and the size are HTTP's own.
 */
export function createHttpFront(targets: Map<string, FrontTarget>, log: Logger): http.Server {
  const server = http.createServer({ requestTimeout: 0, keepAliveTimeout: 120_000 }, (req, res) => {
    handle(req, res).catch((e) => {
      log.error({ err: e }, 'request handling failed')
      res.destroy()
    })
  })
  server.keepAliveTimeout = 120_000
  server.headersTimeout = 60_000

  async function handle(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    let a: Answer
    try {
      if (req.url !== RPC_PATH) throw new BadRequest(404, 'ENOENT', `no such path '${req.url}'; RPCs go to ${RPC_PATH}`)
      if (req.method !== 'POST') throw new BadRequest(405, 'EINVAL', `RPCs are POSTed, not ${req.method}`)
      // The body is read only once the header passed (on a keyed filesystem, its MAC).
      const body = async () => splitFrame(await readBody(req))
      a = await answer(targets, { header: () => decodeReqHeader(req.headers), auth: authToken(req.headers), body, peer: peerNid(req.socket, 'http') }, log)
    } catch (e) {
      if (!(e instanceof BadRequest)) throw e
      a = refusal(e)
    }
    const parts = encodeFrame(a.body, a.bulk)
    const length = totalLength(parts)
    res.writeHead(a.code, {
      ...encodeReplyHeader(a.header),
      ...(a.auth ? { [H.auth]: a.auth } : {}),
      'content-type': 'application/x-lproxy',
      'content-length': String(length),
      // A request refused before its body was read leaves that body unread on the connection.
      connection: a.code >= 500 || !req.complete ? 'close' : 'keep-alive',
    })
    // A small reply leaves in one write with its head; bulk goes as its pieces, never copied.
    if (length <= SMALL_FRAME) return void res.end(Buffer.concat(parts, length))
    for (const p of parts.slice(0, -1)) res.write(p)
    res.end(parts[parts.length - 1])
  }

  return server
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
