import http from 'node:http'
import type { Duplex } from 'node:stream'
import { totalLength } from '../common/chunks.js'
import type { Logger } from '../common/log.js'
import { MAX_BODY } from '../protocol/msg.js'
import { H, RPC_PATH, SMALL_FRAME, authToken, decodeReqHeader, encodeFrame, encodeReplyHeader, splitFrame } from '../protocol/wire.js'
import { type Answer, BadRequest, type FrontTarget, answer, logFailure, peerNid, refusal } from './admit.js'
import { bodyDeadlineMs, type Guards } from './limits.js'

/**
 * How often node's HTTP server looks for heads past their deadline (headersTimeout): often
 * enough that a test's scaled-down deadline is kept to within a second.
 */
const HEAD_CHECK_MS = 500

/**
 * The front of `@http` NIDs: an HTTP server that is never listening itself (front.ts hands it
 * the connections that start with an HTTP method). The checks are front.ts's `answer`;
 * only the path, the method and the size are HTTP's own.
 */
export function createHttpFront(targets: Map<string, FrontTarget>, log: Logger, guards: Guards): http.Server {
  // No Host required: a NID names the node, and node's own bare 400 for its absence would carry no errno.
  const server = http.createServer({ requestTimeout: 0, connectionsCheckingInterval: HEAD_CHECK_MS, requireHostHeader: false }, (req, res) => {
    handle(req, res).catch((e) => {
      logFailure(e, log)
      res.destroy()
    })
  })
  retuneHttp(server, guards)
  // A head node's parser refuses (malformed, too large, late) is answered like any refusal, with an errno.
  server.on('clientError', (err: NodeJS.ErrnoException, sock: Duplex) => {
    // Not while a response is under way on it (its bytes would be mixed), nor to a peer already gone.
    if (!sock.writable || (sock as { _httpMessage?: unknown })._httpMessage || err.code === 'ECONNRESET') return void sock.destroy()
    sock.end(rawRefusal(parserRefusal(err)), () => sock.destroy())
  })

  async function handle(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    let a: Answer
    try {
      if (req.url !== RPC_PATH) throw new BadRequest(404, 'ENOENT', `no such path '${req.url}'; RPCs go to ${RPC_PATH}`)
      if (req.method !== 'POST') throw new BadRequest(405, 'EINVAL', `RPCs are POSTed, not ${req.method}`)
      // The body is read only once the header passed (on a keyed filesystem, its MAC).
      const body = async () => splitFrame(await readBody(req, guards))
      a = await answer(targets, { header: () => decodeReqHeader(req.headers), auth: authToken(req.headers), body, peer: peerNid(req.socket, 'http'), inflight: guards.inflight }, log)
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
      // A body refused before its end (unread after a refused header, late, too large, wrong path) is not read on: the connection goes with the reply.
      connection: a.code >= 500 || !req.complete ? 'close' : 'keep-alive',
    })
    // A small reply leaves in one write with its head; bulk goes as its pieces, never copied.
    if (length <= SMALL_FRAME) return void res.end(Buffer.concat(parts, length))
    for (const p of parts.slice(0, -1)) res.write(p)
    res.end(parts[parts.length - 1])
  }

  return server
}

/** Node's parser errors, as the front's refusals. */
function parserRefusal(err: NodeJS.ErrnoException): BadRequest {
  if (err.code === 'ERR_HTTP_REQUEST_TIMEOUT') return new BadRequest(408, 'ETIMEDOUT', 'request head not complete in time')
  if (err.code === 'HPE_HEADER_OVERFLOW') return new BadRequest(431, 'EOVERFLOW', 'request head too large')
  return new BadRequest(400, 'EPROTO', `malformed HTTP request: ${err.code ?? err.message}`)
}

/** A whole refusal as bytes, for a socket the HTTP server has given up on (no response object). */
function rawRefusal(e: BadRequest): Buffer {
  const a = refusal(e)
  const body = Buffer.concat(encodeFrame(a.body))
  const headers = { ...encodeReplyHeader(a.header), 'content-type': 'application/x-lproxy', 'content-length': String(body.length), connection: 'close' }
  const head = [`HTTP/1.1 ${a.code} ${http.STATUS_CODES[a.code] ?? 'Refused'}`, ...Object.entries(headers).map(([k, v]) => `${k}: ${v}`), '', ''].join('\r\n')
  return Buffer.concat([Buffer.from(head, 'latin1'), body])
}

/** The deadlines of the front's limits (guards.limits may have changed since: a target's obd_timeout). */
export function retuneHttp(server: http.Server, guards: Guards): void {
  server.headersTimeout = guards.limits.headMs
  server.keepAliveTimeout = guards.limits.idleMs
}

/** The body as the socket delivered it: a large one is never joined into one buffer. Due by its declared length's deadline. */
function readBody(req: http.IncomingMessage, guards: Guards): Promise<Buffer[]> {
  return new Promise((resolve, reject) => {
    const declared = Number(req.headers['content-length'] ?? 0)
    if (declared > MAX_BODY) {
      req.resume()
      return reject(new BadRequest(413, 'EFBIG', `request body of ${declared} bytes exceeds ${MAX_BODY}`))
    }
    const ms = Math.round(bodyDeadlineMs(guards.limits, declared || 0))
    const timer = guards.clock.setTimeout(() => {
      req.pause()
      reject(new BadRequest(408, 'ETIMEDOUT', `request body of ${declared} bytes not complete within ${ms} ms`))
    }, ms)
    const chunks: Buffer[] = []
    let n = 0
    req.on('data', (c: Buffer) => {
      n += c.length
      if (n > MAX_BODY) {
        timer.cancel()
        req.destroy()
        reject(new BadRequest(413, 'EFBIG', `request body exceeds ${MAX_BODY} bytes`))
        return
      }
      chunks.push(c)
    })
    req.on('end', () => {
      timer.cancel()
      resolve(chunks)
    })
    req.on('error', reject)
    req.once('close', () => timer.cancel())
  })
}
