import type net from 'node:net'
import type { Logger } from '../common/log.js'
import { errnoOf } from '../protocol/errno.js'
import { MsgError, MsgReader, REQUEST_LIMITS, type RequestMsg, encodeReply, sendMsg } from '../protocol/msg.js'
import { checkReqHeader } from '../protocol/wire.js'
import { type Admission, type FrontTarget, admitBody, admitHeader, peerNid } from './admit.js'

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
  // The header (the shared key's MAC among it) is checked as soon as it is in: a refused body is dropped unread.
  const reader = new MsgReader<Admission>('request', REQUEST_LIMITS, (head) => {
    const verdict = admitHeader(targets, { header: () => checkReqHeader(head.h), auth: head.auth }, log)
    return { verdict, readBody: verdict.ok }
  })
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
      reader.push(chunk, (m) => void serve(m as RequestMsg<Admission>))
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

  async function serve(m: RequestMsg<Admission>): Promise<void> {
    inflight++
    const v = m.verdict!
    const a = v.ok ? await admitBody(v, { body: () => ({ json: m.json, bulk: m.bulk }), peer }, log) : v.answer
    inflight--
    if (sock.writable) sendMsg(sock, encodeReply(m.h.xid, a.code, a.header, a.body, a.bulk, a.auth))
    flow()
    part()
  }
}
