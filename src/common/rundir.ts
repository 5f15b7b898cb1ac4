import path from 'node:path'
import { createHash } from 'node:crypto'
import { nidToken } from '../protocol/nid.js'

/** Where daemons put their root-only control sockets. */
export function runDir(): string {
  return process.env.LPROXY_RUN_DIR ?? '/run/lproxy'
}

export function nodeSocket(nid: string, port: number): string {
  return path.join(runDir(), `node-${nidToken(nid)}-${port}.sock`)
}

export function clientSocket(mountpoint: string): string {
  const h = createHash('sha256').update(path.resolve(mountpoint)).digest('hex').slice(0, 16)
  return path.join(runDir(), `client-${h}.sock`)
}
