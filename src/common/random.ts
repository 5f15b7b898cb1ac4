import { randomBytes } from 'node:crypto'

/**
 * Random bytes as text, drawn from a 4 KiB pool: a randomBytes call per request (a nonce, an
 * open handle) cost as much as the request's MAC on a CPU just woken.
 */
const pool = { bytes: Buffer.alloc(0), at: 0 }

export function randomText(n: number, encoding: 'hex' | 'base64url'): string {
  if (pool.at + n > pool.bytes.length) {
    pool.bytes = randomBytes(Math.max(4096, n))
    pool.at = 0
  }
  pool.at += n
  return pool.bytes.toString(encoding, pool.at - n, pool.at)
}
