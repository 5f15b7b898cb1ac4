import http from 'node:http'
import type { AddressInfo } from 'node:net'
import { Counter, Gauge, Histogram, Registry } from 'prom-client'
import { LpError } from '../protocol/errno.js'
import type { ListenAddress } from './listen.js'
import type { Logger } from './log.js'

/**
 * /metrics in the Prometheus text format, for the mount daemon and server nodes alike:
 * prom-client metrics whose values are read from the layers' counters at each scrape, and the
 * HTTP server (bound only where the admin said: see listen.ts).
 */
export type Sample<L extends string> = [labels: Record<L, string>, value: number]

type Labels<L extends string> = Partial<Record<L, string>>

/** A metric's configuration whose values are the layers' own, read at each scrape. */
function readAtScrape<L extends string, M extends { reset(): void }>(
  registry: Registry,
  name: string,
  help: string,
  labelNames: L[],
  read: () => Iterable<Sample<L>>,
  put: (m: M, labels: Labels<L>, v: number) => void,
) {
  return {
    name,
    help,
    labelNames,
    registers: [registry],
    collect(this: M) {
      this.reset()
      for (const [labels, v] of read()) put(this, labels, v)
    },
  }
}

export function counterOf<L extends string>(registry: Registry, name: string, help: string, labelNames: L[], read: () => Iterable<Sample<L>>): Counter<L> {
  return new Counter<L>(readAtScrape<L, Counter<L>>(registry, name, help, labelNames, read, (m, l, v) => m.inc(l, v)))
}

export function gaugeOf<L extends string>(registry: Registry, name: string, help: string, labelNames: L[], read: () => Iterable<Sample<L>>): Gauge<L> {
  return new Gauge<L>(readAtScrape<L, Gauge<L>>(registry, name, help, labelNames, read, (m, l, v) => m.set(l, v)))
}

/** Upper bounds of the RPC latency buckets, seconds: a LAN round trip up to a failover's wait. */
export const LATENCY_BUCKETS = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120]

export function latencyHistogram<L extends string>(registry: Registry, name: string, help: string, labelNames: L[]): Histogram<L> {
  return new Histogram<L>({ name, help, labelNames, buckets: LATENCY_BUCKETS, registers: [registry] })
}

export interface MetricsServer {
  readonly address: ListenAddress
  close(): Promise<void>
}

/** GET /metrics answers the registry; anything else a 404 (405 for another method). */
export async function serveMetrics(at: ListenAddress, registry: Registry, log: Logger): Promise<MetricsServer> {
  const server = http.createServer((req, res) => {
    const path = (req.url ?? '').split('?')[0]
    if (path !== '/metrics') return void res.writeHead(404, { 'content-type': 'text/plain' }).end('only /metrics here\n')
    if (req.method !== 'GET' && req.method !== 'HEAD') return void res.writeHead(405, { allow: 'GET, HEAD' }).end()
    registry.metrics().then(
      (text) => res.writeHead(200, { 'content-type': registry.contentType }).end(req.method === 'HEAD' ? undefined : text),
      (e: Error) => {
        log.error({ err: e.message }, '/metrics: collecting failed')
        res.writeHead(500, { 'content-type': 'text/plain' }).end(`${e.message}\n`)
      },
    )
  })
  await new Promise<void>((resolve, reject) => {
    server.once('error', (e: NodeJS.ErrnoException) => reject(new LpError(e.code === 'EADDRINUSE' ? 'EADDRINUSE' : 'EINVAL', `metrics: cannot listen on ${at.host}:${at.port}: ${e.message}`)))
    server.listen(at.port, at.host, () => resolve())
  })
  const bound = server.address() as AddressInfo
  log.info({ host: bound.address, port: bound.port }, `serving /metrics on ${at.host}:${bound.port}`)
  return {
    address: { host: at.host, port: bound.port },
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve())
        server.closeAllConnections()
      }),
  }
}
