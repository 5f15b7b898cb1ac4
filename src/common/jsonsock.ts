import net from 'node:net'
import { promises as fsp } from 'node:fs'
import path from 'node:path'
import { LpError, toStatus, errnoName, type ErrnoName } from '../protocol/errno.js'

/**
 * A root-only Unix socket speaking one JSON request and one JSON reply per line: the
 * admin channel of server nodes and mount daemons.
 */
export type Handler = (req: Record<string, unknown>) => Promise<unknown>

export interface JsonReply {
  ok: boolean
  result?: unknown
  error?: string
  errno?: string
}

export async function serveJsonSocket(file: string, handler: Handler): Promise<net.Server> {
  await fsp.mkdir(path.dirname(file), { recursive: true, mode: 0o700 })
  await fsp.rm(file, { force: true })
  const server = net.createServer((sock) => {
    let buf = ''
    sock.setEncoding('utf8')
    sock.on('error', () => undefined)
    sock.on('data', (chunk: string) => {
      buf += chunk
      let nl
      while ((nl = buf.indexOf('\n')) >= 0) {
        const line = buf.slice(0, nl)
        buf = buf.slice(nl + 1)
        void answer(line).then((r) => sock.writable && sock.write(JSON.stringify(r) + '\n'))
      }
    })
  })
  async function answer(line: string): Promise<JsonReply> {
    try {
      const req = JSON.parse(line) as Record<string, unknown>
      return { ok: true, result: await handler(req) }
    } catch (e) {
      return { ok: false, error: (e as Error).message ?? String(e), errno: errnoName(toStatus(e)) }
    }
  }
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject)
    server.listen(file, () => resolve())
  })
  await fsp.chmod(file, 0o600)
  return server
}

export class SocketUnavailable extends Error {}

/** The peer accepted the connection but did not answer in time (a hung daemon). */
export class SocketTimeout extends Error {}

/** Send one request; throws SocketUnavailable when nobody listens, LpError when the peer failed it. */
export function callJsonSocket<T = unknown>(file: string, req: Record<string, unknown>, timeoutMs = 0): Promise<T> {
  return new Promise((resolve, reject) => {
    const sock = net.createConnection(file)
    let buf = ''
    let settled = false
    const timer = timeoutMs ? setTimeout(() => finish(new SocketTimeout(`no answer from ${file} within ${timeoutMs} ms`)), timeoutMs) : null
    function finish(err: Error | null, value?: T) {
      if (settled) return
      settled = true
      if (timer) clearTimeout(timer)
      sock.destroy()
      if (err) reject(err)
      else resolve(value as T)
    }
    sock.setEncoding('utf8')
    sock.on('connect', () => sock.write(JSON.stringify(req) + '\n'))
    sock.on('data', (chunk: string) => {
      buf += chunk
      const nl = buf.indexOf('\n')
      if (nl < 0) return
      const r = JSON.parse(buf.slice(0, nl)) as JsonReply
      if (r.ok) finish(null, r.result as T)
      else finish(new LpError((r.errno ?? 'EIO') as ErrnoName, r.error))
    })
    sock.on('error', (e: NodeJS.ErrnoException) => {
      if (e.code === 'ENOENT' || e.code === 'ECONNREFUSED') finish(new SocketUnavailable(`${file}: ${e.code}`))
      else finish(e)
    })
    sock.on('close', () => finish(new SocketUnavailable(`${file}: closed without an answer`)))
  })
}
