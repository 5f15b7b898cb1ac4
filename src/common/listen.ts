import { LpError } from '../protocol/errno.js'

/**
 * Where /metrics listens (`metrics=ADDR:PORT`, `--metrics ADDR:PORT`): never a default, so
 * metrics are served only where the admin said. Apart from metrics.ts so that parsing options
 * does not load prom-client.
 */
export interface ListenAddress {
  host: string
  port: number
}

/** `ADDR:PORT`, `[v6addr]:PORT`: where /metrics listens. */
export function parseListenAddress(what: string, text: string): ListenAddress {
  const m = /^(?:\[([0-9a-fA-F:.]+)\]|([A-Za-z0-9.-]+)):(\d{1,5})$/.exec(text)
  const port = Number(m?.[3])
  if (!m || port < 1 || port > 65535) throw new LpError('EINVAL', `${what} '${text}' is not ADDR:PORT (e.g. 127.0.0.1:9100, [::1]:9100)`)
  return { host: m[1] ?? m[2]!, port }
}

export function isListenAddress(text: string): boolean {
  try {
    parseListenAddress('', text)
    return true
  } catch {
    return false
  }
}
