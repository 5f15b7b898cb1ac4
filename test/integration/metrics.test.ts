/**
 * /metrics during a failover, read as a scraper reads it: a client's registry served over
 * HTTP and the server nodes' own (`--metrics`), scraped every 50 ms while OST0001's node is
 * SIGKILLed and its partner takes over, each answer parsed by an independent Prometheus
 * text-format parser. The import must be seen to leave FULL and come back, and no counter
 * (nor histogram bucket, sum or count) may ever go down from one scrape to the next.
 */
import { randomBytes } from 'node:crypto'
import { getMetricsFromStream, type PromHistogramData, type PromMetrics } from 'prom2javascript'
import { request } from 'undici'
import { afterEach, describe, expect, it, vi } from 'vitest'
import { createLogger } from '../../src/common/log.js'
import { serveMetrics, type MetricsServer } from '../../src/common/metrics.js'
import { clientRegistry } from '../../src/ctl/metrics.js'
import { sh } from '../helpers/sh.js'
import { TARGET_NAMES, Tier } from '../helpers/tier.js'

const NET = '127.0.117'
const PORT = 32000
const METRICS_PORT = 32001
const CLIENT_METRICS = { host: `${NET}.50`, port: 32002 }
const OST = TARGET_NAMES.ost1

let t: Tier | undefined
let served: MetricsServer | undefined
afterEach(async () => {
  await served?.close()
  await t?.down()
  served = t = undefined
}, 60_000)

async function scrape(url: string): Promise<PromMetrics> {
  const r = await request(url)
  expect(r.statusCode).toBe(200)
  expect(r.headers['content-type']).toMatch(/^text\/plain; version=0\.0\.4/)
  return getMetricsFromStream(r.body)
}

type Series = { labels: Record<string, string>; value?: number } & Partial<PromHistogramData>

function series(scraped: PromMetrics, name: string): Series[] {
  return (scraped[name]?.data ?? []) as Series[]
}

/** Every monotonic series of a scrape by a key naming it: counters, and histograms' buckets, sums and counts. */
function monotonic(scraped: PromMetrics): Map<string, number> {
  const out = new Map<string, number>()
  for (const [name, m] of Object.entries(scraped)) {
    for (const x of series(scraped, name)) {
      const key = `${name}${JSON.stringify(x.labels)}`
      if (m.type === 'counter') out.set(key, x.value!)
      if (m.type !== 'histogram') continue
      out.set(`${key}_count`, x.count!)
      out.set(`${key}_sum`, x.sum!)
      for (const [le, n] of Object.entries(x.buckets!)) out.set(`${key}_le${le}`, n)
    }
  }
  return out
}

/** A series' value (a histogram's count) by the labels given. */
function value(scraped: PromMetrics, name: string, labels: Record<string, string>): number | undefined {
  const x = series(scraped, name).find((m) => Object.entries(labels).every(([k, v]) => m.labels[k] === v))
  return x && (x.value ?? x.count)
}

/** Scrapes `url` until stopped, checking at each one that no monotonic series went down. */
function scraper(url: string) {
  const scrapes: PromMetrics[] = []
  const decreases: string[] = []
  let last = new Map<string, number>()
  let running = true
  const loop = (async () => {
    while (running) {
      const fams = await scrape(url)
      const now = monotonic(fams)
      for (const [k, v] of now) if (v < (last.get(k) ?? 0)) decreases.push(`${k}: ${last.get(k)} -> ${v}`)
      last = new Map([...last, ...now])
      scrapes.push(fams)
      await new Promise((r) => setTimeout(r, 50))
    }
  })()
  // Marked handled now; stop() awaits it and so still fails on a failed scrape.
  loop.catch(() => undefined)
  return {
    scrapes,
    decreases,
    async stop() {
      running = false
      await loop
    },
  }
}

describe('/metrics through an OST failover', () => {
  it('the import leaves FULL and comes back, replay and stall are counted, counters never go down; the new node counts what it served', async () => {
    t = await Tier.up({ net: NET, port: PORT, metricsPort: METRICS_PORT })
    const a = await t.client('a')
    served = await serveMetrics(CLIENT_METRICS, clientRegistry(a.fs), createLogger({ name: 'metrics-test', level: 'silent' }))
    const url = `http://${CLIENT_METRICS.host}:${CLIENT_METRICS.port}/metrics`
    const full = (f: PromMetrics) => value(f, 'lproxy_import_full', { target: OST })

    await a.write('/before', randomBytes(64 * 1024))
    // Writes the OST answers but never commits: the client keeps them and must replay them.
    await t.barrier('ost1')
    await a.write('/kept', randomBytes(256 * 1024))
    const s = scraper(url)
    await vi.waitFor(() => expect(s.scrapes.length).toBeGreaterThan(1), { timeout: 5000, interval: 20 })
    expect(full(s.scrapes.at(-1)!)).toBe(1)

    const oss2 = await t.failover('ost1')
    expect(oss2.nid).toBe(t.nid('oss2'))
    await t.recovered('ost1')
    await vi.waitFor(() => expect(a.fs.imports().find((i) => i.target === OST)!.state).toBe('FULL'), { timeout: 30_000, interval: 50 })
    // One scrape begun after it is FULL again, then stop: the one in flight now may have read the
    // state before, so the one after it.
    const n = s.scrapes.length
    await vi.waitFor(() => expect(s.scrapes.length).toBeGreaterThan(n + 1), { timeout: 5000, interval: 20 })
    await s.stop()

    const states = s.scrapes.map(full)
    expect(states).toContain(0)
    expect(states.at(-1)).toBe(1)
    // A non-FULL state was reported as the import's state in some scrape.
    const away = s.scrapes.flatMap((f) => series(f, 'lproxy_import_state').filter((m) => m.labels.target === OST && m.value === 1 && m.labels.state !== 'FULL'))
    expect(away.length).toBeGreaterThan(0)
    expect(s.decreases).toEqual([])

    const end = s.scrapes.at(-1)!
    const first = s.scrapes[0]!
    expect(value(end, 'lproxy_import_replayed_requests_total', { target: OST })).toBeGreaterThan(0)
    expect(value(end, 'lproxy_import_replayed_bytes_total', { target: OST })).toBeGreaterThanOrEqual(256 * 1024)
    expect(value(end, 'lproxy_import_stall_seconds_total', { target: OST })).toBeGreaterThan(0)
    expect(value(end, 'lproxy_import_state_transitions_total', { target: OST })!).toBeGreaterThan(value(first, 'lproxy_import_state_transitions_total', { target: OST })!)
    expect(value(end, 'lproxy_rpc_duration_seconds', { target: OST, op: 'ost_write' })).toBeGreaterThan(0)
    expect(value(end, 'lproxy_llite_bytes_total', { direction: 'write' })).toBeGreaterThanOrEqual(320 * 1024)
    expect(value(end, 'lproxy_osc_dirty_bytes', { target: OST })).toBe(0)

    // The node that took over counts what it served: the replays among its writes, the client's connect.
    const node = await scrape(`http://${t.metricsAddress('oss2')}/metrics`)
    expect(value(node, 'lproxy_target_requests_total', { target: OST, op: 'write' })).toBeGreaterThan(0)
    expect(value(node, 'lproxy_target_requests_total', { target: OST, op: 'connect' })).toBeGreaterThan(0)
    expect(value(node, 'lproxy_target_recovery_replayed_requests', { target: OST })).toBeGreaterThan(0)
    expect(value(node, 'lproxy_target_recovering', { target: OST })).toBe(0)
    expect(value(node, 'lproxy_target_request_duration_seconds', { target: OST, op: 'write' })).toBeGreaterThan(0)

    // /metrics alone is served.
    const base = `http://${CLIENT_METRICS.host}:${CLIENT_METRICS.port}`
    expect((await request(`${base}/`)).statusCode).toBe(404)
    expect((await request(`${base}/metrics`, { method: 'POST', body: 'x' })).statusCode).toBe(405)

    // get_param on the server node, as lctl on a Lustre OSS.
    const params = await oss2.admin<Array<{ name: string; value: Record<string, unknown> }>>({ cmd: 'get_param', patterns: ['obdfilter.*.stats', 'obdfilter.*.exports'] })
    expect(params.map((p) => p.name)).toEqual([`obdfilter.${OST}.stats`, `obdfilter.${OST}.exports`])
    expect(params[0]!.value).toMatchObject({ write: { unit: 'usecs' }, write_bytes: { unit: 'bytes' } })
    expect(params[1]!.value).toEqual(expect.arrayContaining([expect.objectContaining({ uuid: a.uuid, connected: true })]))
    // The same through the CLI, by the target's directory and by the node's NID.
    const cli = (args: string) => sh(`node bin/lproxy.js get_param ${args}`)
    expect((await cli(`--target ${t.dir('ost1')} -n 'obdfilter.*.recovery_status'`)).trim()).toMatch(/^status: COMPLETE$/m)
    const byNid = JSON.parse(await cli(`--node ${t.nid('oss2')} --port ${PORT} --json 'obdfilter.*.instance'`)) as Array<{ name: string; value: number }>
    expect(byNid).toEqual([{ name: `obdfilter.${OST}.instance`, value: expect.any(Number) }])
  }, 90_000)
})
