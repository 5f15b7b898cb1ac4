import net from 'node:net'
import { promises as fsp } from 'node:fs'
import path from 'node:path'
import type { z } from 'zod'
import { LpError, toStatus, errnoName, type ErrnoName } from '../protocol/errno.js'

/**
 * A root-only Unix socket speaking one JSON request and one JSON reply per line: the
 * admin channel of server nodes and mount daemons.
 */
export type Handler<R> = (req: R) => Promise<unknown>

/** A request line longer than this is not an admin command: the connection is dropped. */
const MAX_LINE = 1 << 20

export interface JsonReply {
  ok: boolean
  result?: unknown
  error?: string
  errno?: string
}

/** Serve `file`; each request is checked against `schema` before `handler` sees it. */
export async function serveJsonSocket<S extends z.ZodType>(file: string, schema: S, handler: Handler<z.infer<S>>): Promise<net.Server> {
  await fsp.mkdir(path.dirname(file), { recursive: true, mode: 0o700 })
  await fsp.rm(file, { force: true })
  const server = net.createServer((sock) => {
    let buf = ''
    sock.setEncoding('utf8')
    sock.on('error', () => undefined)
    sock.on('data', (chunk: string) => {
      buf += chunk
      if (buf.length > MAX_LINE && buf.indexOf('\n') < 0) return void sock.destroy()
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
      const parsed = schema.safeParse(JSON.parse(line))
      if (!parsed.success) {
        const issue = parsed.error.issues[0]
        throw new LpError('EINVAL', `invalid request: ${issue ? `${issue.path.join('.') || 'request'}: ${issue.message}` : 'malformed'}`)
      }
      return { ok: true, result: await handler(parsed.data) }
    } catch (e) {
      return { ok: false, error: (e as Error).message ?? String(e), errno: errnoName(toStatus(e)) }
    }
  }
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject)
    // The socket is bound inside listen(): made 0600 from the start, never open to others for a moment.
    const umask = process.umask(0o177)
    try {
      server.listen(file, () => resolve())
    } finally {
      process.umask(umask)
    }
  })
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
