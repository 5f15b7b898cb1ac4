import type net from 'node:net'
import type { Logger } from '../common/log.js'
import { errnoOf } from '../protocol/errno.js'
import { MsgError, MsgReader, REQUEST_LIMITS, type RequestMsg, encodeReply, sendMsg } from '../protocol/msg.js'
import { checkReqHeader } from '../protocol/wire.js'
import { type FrontTarget, answer, peerNid } from './admit.js'

/**
 * Requests a connection may have at the targets before the front stops reading from it: the
 * socket's own buffers then hold the client back, so a flood of writes costs bounded memory.
 */
const MAX_INFLIGHT = 64

/**
 * The front of `@tcp` NIDs on one connection: binary messages (protocol/msg.ts), many in
 * flight, each answered as soon as its target is done, with its xid. A request that is well
 * framed but wrong is refused like an HTTP one (front's `answer`) and the connection stays;
 * a malformed frame is answered with an error and the connection closed, as the stream is
 * out of step.
 */
export function serveMsgs(sock: net.Socket, targets: Map<string, FrontTarget>, log: Logger): void {
  sock.setNoDelay(true)
  // A client host that vanished without a word does not hold its connection here forever.
  sock.setKeepAlive(true, 60_000)
  const reader = new MsgReader('request', REQUEST_LIMITS)
  const peer = peerNid(sock, 'tcp')
  let inflight = 0
  let broken = false

  // Back-pressure: stop reading while replies wait in the socket's buffer or targets are busy.
  const flow = (): void => {
    if (broken) return
    const hold = inflight >= MAX_INFLIGHT || sock.writableNeedDrain
    if (hold && !sock.isPaused()) sock.pause()
    else if (!hold && sock.isPaused()) sock.resume()
  }
  sock.on('drain', flow)

  sock.on('data', (chunk: Buffer) => {
    if (broken) return
    try {
      reader.push(chunk, (m) => void serve(m as RequestMsg))
    } catch (e) {
      broken = true
      sock.pause()
      const xid = e instanceof MsgError ? e.xid : 0
      const error = (e as Error).message
      log.warn({ remote: sock.remoteAddress, xid, err: error }, `malformed message from ${sock.remoteAddress}: ${error}; closing the connection`)
      const status = -errnoOf('EPROTO')
      parting = encodeReply(xid, 400, { status, transno: 0, lastCommitted: 0, flags: [], error }, { error, errno: 'EPROTO' })
      return void part()
    }
    flow()
  })

  // After a malformed frame: the requests before it are answered, then the error, then the end.
  let parting: Buffer[] | null = null
  const part = (): void => {
    if (!parting || inflight) return
    sendMsg(sock, parting)
    parting = null
    sock.destroySoon()
  }

  async function serve(m: RequestMsg): Promise<void> {
    inflight++
    const a = await answer(targets, { header: () => checkReqHeader(m.h), auth: m.auth, body: () => ({ json: m.json, bulk: m.bulk }), peer }, log)
    inflight--
    if (sock.writable) sendMsg(sock, encodeReply(m.h.xid, a.code, a.header, a.body, a.bulk, a.auth))
    flow()
    part()
  }
}
