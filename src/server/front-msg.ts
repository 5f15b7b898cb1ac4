import type net from 'node:net'
import type { Logger } from '../common/log.js'
import { errnoOf } from '../protocol/errno.js'
import { MsgError, MsgReader, REQUEST_LIMITS, type RequestMsg, encodeReply, sendMsg } from '../protocol/msg.js'
import { checkReqHeader } from '../protocol/wire.js'
import { type Admission, type FrontTarget, admitBody, admitHeader, peerNid } from './admit.js'
import { ConnDeadline, type Guards } from './limits.js'

/**
 * Requests a connection may have at the targets before the front stops reading from it: the
 * socket's own buffers then hold the client back, so a flood of writes costs bounded memory.
 */
const MAX_INFLIGHT = 64
const EMPTY = Buffer.alloc(0)

/**
 * The front of `@tcp` NIDs on one connection: binary messages (protocol/msg.ts), many in
 * flight, each answered as soon as its target is done, with its xid. A request that is well
 * framed but wrong is refused like an HTTP one (front's `answer`) and the connection stays;
 * a malformed frame is answered with an error and the connection closed, as the stream is
 * out of step.
 */
export function serveMsgs(sock: net.Socket, targets: Map<string, FrontTarget>, log: Logger, guards: Guards): void {
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
  /** Where the message under way is: none, its head arriving, or its body (armed once). */
  let under: 'none' | 'head' | 'body' = 'none'
  const deadline = new ConnDeadline(guards.limits, guards.clock, (what) => {
    // Idle, or replies left unread: nothing to tell a peer that is not listening.
    if (sock.writableNeedDrain || (under === 'none' && !inflight)) return void sock.destroy()
    breakOff(0, 408, 'ETIMEDOUT', `${what}; closing the connection`)
  })
  sock.once('close', () => deadline.stop())

  /** The deadline for where the connection is now: a message arriving, replies unread, requests at the targets, or idle. */
  const track = (): void => {
    if (broken) return
    if (sock.isPaused()) return sock.writableNeedDrain ? deadline.drain(sock.writableLength) : deadline.busy()
    const m = reader.underway
    if (!m) {
      under = 'none'
      return inflight ? deadline.busy() : deadline.idle()
    }
    if (under === 'none') {
      under = 'head'
      deadline.head()
    }
    if (under === 'head' && m.declared !== undefined) {
      under = 'body'
      deadline.body(m.declared)
    }
  }

  /**
   * Serve the messages `chunk` completes (none: those already buffered), up to the cap: a
   * chunk may hold hundreds of small requests, each asking for a large reply. Past it, or while
   * replies wait in the socket's buffer, they wait in the reader, unparsed, until there is room.
   * False once the connection is broken.
   */
  const room = (): boolean => inflight < MAX_INFLIGHT && !sock.writableNeedDrain
  let taking = false
  const take = (chunk: Buffer): boolean => {
    // A refusal answered at once calls flow() from within: the loop below goes on by itself.
    if (taking) return true
    taking = true
    let done = 0
    try {
      reader.push(chunk, (m) => {
        done++
        void serve(m as RequestMsg<Admission>)
        return room()
      })
    } catch (e) {
      const error = (e as Error).message
      log.warn({ remote: sock.remoteAddress, err: error }, `malformed message from ${sock.remoteAddress}: ${error}; closing the connection`)
      breakOff(e instanceof MsgError ? e.xid : 0, 400, 'EPROTO', error)
      return false
    } finally {
      taking = false
    }
    // A message completed: what is left is the next one's, started now.
    if (done) under = 'none'
    return true
  }

  // Back-pressure: stop reading while replies wait in the socket's buffer or targets are busy.
  const flow = (): void => {
    if (broken) return
    // Requests that came past the cap wait in the reader: served first, as room comes.
    if (room() && reader.buffered && !take(EMPTY)) return
    const hold = !room()
    if (hold && !sock.isPaused()) sock.pause()
    else if (!hold && sock.isPaused()) {
      sock.resume()
      // The message under way waited on us, not on its peer: its time starts again.
      under = 'none'
    }
    track()
  }
  sock.on('drain', flow)

  sock.on('data', (chunk: Buffer) => {
    if (!broken && take(chunk)) flow()
  })

  // After a malformed or late frame: the requests before it are answered, then the error, then the end.
  let parting: Buffer[] | null = null
  const part = (): void => {
    if (!parting || inflight) return
    sendMsg(sock, parting)
    parting = null
    sock.destroySoon()
  }
  function breakOff(xid: number, code: number, errno: 'EPROTO' | 'ETIMEDOUT', error: string): void {
    if (broken) return
    broken = true
    deadline.stop()
    sock.pause()
    if (code === 408) log.warn({ remote: sock.remoteAddress, err: error }, `${sock.remoteAddress}: ${error}`)
    parting = encodeReply(xid, code, { status: -errnoOf(errno), transno: 0, lastCommitted: 0, flags: [], error }, { error, errno })
    part()
  }

  async function serve(m: RequestMsg<Admission>): Promise<void> {
    inflight++
    const v = m.verdict!
    const a = v.ok ? await admitBody(v, { body: () => ({ json: m.json, bulk: m.bulk }), peer, inflight: guards.inflight }, log) : v.answer
    inflight--
    if (sock.writable) sendMsg(sock, encodeReply(m.h.xid, a.code, a.header, a.body, a.bulk, a.auth))
    flow()
    part()
  }
}
