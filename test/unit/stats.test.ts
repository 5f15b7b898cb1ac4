/**
 * The counters behind get_param's stats files and /metrics (src/common/stats.ts and the
 * layers' own: ptlrpc, osc, mdc, llite), driven without network, time on a ManualClock.
 */
import { describe, expect, it } from 'vitest'
import { parseOptions } from '../../src/client/options.js'
import { ManualClock } from '../../src/common/clock.js'
import { parseListenAddress } from '../../src/common/listen.js'
import { Histogram, LatencyFeed, StatsSet } from '../../src/common/stats.js'
import { counted, LliteStats } from '../../src/llite/stats.js'
import { OscRpcStats } from '../../src/osc/stats.js'
import { ImportStats } from '../../src/ptlrpc/stats.js'

describe('StatsSet (lprocfs counters)', () => {
  it('shows only counters with samples, in table order, with min/max/sum for a unit', () => {
    const s = new StatsSet({ open: 'usecs', read_bytes: 'bytes', close: 'reqs' })
    s.add('read_bytes', 4096)
    s.add('open', 30)
    s.add('read_bytes', 100)
    s.add('open', 10)
    expect(s.view()).toEqual({
      open: { samples: 2, unit: 'usecs', min: 10, max: 30, sum: 40 },
      read_bytes: { samples: 2, unit: 'bytes', min: 100, max: 4096, sum: 4196 },
    })
    s.add('close')
    expect(s.view().close).toEqual({ samples: 1, unit: 'reqs' })
    expect([s.samples('open'), s.sum('read_bytes'), s.samples('nothing')]).toEqual([2, 4196, 0])
  })

  it('refuses a counter it does not have (a typo would otherwise count nowhere)', () => {
    expect(() => new StatsSet({ open: 'reqs' }).add('opne')).toThrow(/no counter 'opne'/)
  })
})

describe('Histogram (obd_histogram)', () => {
  it('log2 buckets: bucket i holds values up to 2^i; rows end at the last non-empty one with percents', () => {
    const h = new Histogram(8, (i) => String(2 ** i))
    for (const v of [1, 2, 3, 4, 256, 1000]) h.tallyLog2(v)
    expect(h.view()).toEqual({ '1': [1, 16, 16], '2': [1, 16, 33], '4': [2, 33, 66], '8': [0, 0, 66], '16': [0, 0, 66], '32': [0, 0, 66], '64': [0, 0, 66], '128': [2, 33, 100] })
    expect(h.total).toBe(6)
  })

  it('linear buckets: the last takes everything above; an empty histogram shows no row', () => {
    const h = new Histogram(4, String)
    expect(h.view()).toEqual({})
    for (const v of [0, 0, 1, 9]) h.tally(v)
    expect(h.view()).toEqual({ '0': [2, 50, 50], '1': [1, 25, 75], '2': [0, 0, 75], '3': [1, 25, 100] })
  })
})

describe('LatencyFeed', () => {
  it('tells every watcher each latency until it stops watching', () => {
    const f = new LatencyFeed()
    const a: Array<[string, number]> = []
    const b: string[] = []
    const stopA = f.watch((op, s) => a.push([op, s]))
    f.watch((op) => b.push(op))
    f.tell('ping', 0.5)
    stopA()
    f.tell('ost_read', 1)
    expect(a).toEqual([['ping', 0.5]])
    expect(b).toEqual(['ping', 'ost_read'])
  })
})

describe('ImportStats', () => {
  it('stall time counts only time out of FULL after the first FULL, the current stall included, until CLOSED', () => {
    let now = 0
    const s = new ImportStats(() => now)
    s.state('CONNECTING')
    now = 5000
    s.state('FULL')
    expect(s.stallMs).toBe(0)
    now = 6000
    s.state('DISCONN')
    now = 7000
    s.state('CONNECTING')
    now = 8500
    expect(s.stallMs).toBe(2500)
    s.state('FULL')
    now = 20000
    expect(s.stallMs).toBe(2500)
    s.state('DISCONN')
    now = 21000
    s.state('CLOSED')
    now = 30000
    expect(s.stallMs).toBe(3500)
    expect([s.transitions, s.entered.get('FULL'), s.entered.get('DISCONN')]).toEqual([7, 2, 2])
  })

  it('counts answers by op with their latency, and bulk bytes of successful reads and writes', () => {
    const s = new ImportStats(() => 0)
    const seen: Array<[string, number]> = []
    s.latency.watch((op, sec) => seen.push([op, sec]))
    s.answer('ost_write', 4, 8192)
    s.answer('ost_write', 2)
    s.answer('ost_read', 10, 4096)
    s.answer('ping', 1, 100)
    expect(s.bulk).toEqual({ read: { rpcs: 1, bytes: 4096, ms: 10 }, write: { rpcs: 1, bytes: 8192, ms: 4 } })
    expect(seen).toEqual([['ost_write', 0.004], ['ost_write', 0.002], ['ost_read', 0.01], ['ping', 0.001]])
    expect(s.avgWaitMs).toBe(17 / 4)
  })
})

describe('OscRpcStats (rpc_stats)', () => {
  it('tallies pages per RPC and the RPCs already in flight at each send, per direction', () => {
    const s = new OscRpcStats()
    const a = s.begin('write', 4096 * 256)
    const b = s.begin('write', 100)
    const r = s.begin('read', 8192)
    expect([s.inFlight('write'), s.inFlight('read')]).toEqual([2, 1])
    a()
    a()
    b()
    r()
    expect([s.inFlight('write'), s.inFlight('read')]).toEqual([0, 0])
    const v = s.view(1.5, 3) as { pages_per_rpc: { write: Record<string, unknown>; read: Record<string, unknown> }; rpcs_in_flight: { write: Record<string, unknown> } }
    expect(v).toMatchObject({ snapshot_time: 1.5, pending_write_pages: 3, write_RPCs_in_flight: 0 })
    expect(v.pages_per_rpc.write['1']).toEqual([1, 50, 50])
    expect(v.pages_per_rpc.write['256']).toEqual([1, 50, 100])
    expect(v.pages_per_rpc.read).toEqual({ '1': [0, 0, 0], '2': [1, 100, 100] })
    expect(v.rpcs_in_flight.write).toEqual({ '0': [1, 50, 50], '1': [1, 50, 100] })
  })
})

describe('@counted (llite.*.stats)', () => {
  class Fake {
    readonly stats: LliteStats
    constructor(readonly clock: ManualClock) {
      this.stats = new LliteStats(clock)
    }

    @counted('read', (r: Buffer[]) => r.reduce((n, b) => n + b.length, 0))
    async read(len: number): Promise<Buffer[]> {
      await this.clock.sleep(3)
      return [Buffer.alloc(len), Buffer.alloc(1)]
    }

    @counted((_name: string, dir?: boolean) => (dir ? 'rmdir' : 'unlink'))
    async unlink(_name: string, dir = false): Promise<number> {
      if (dir) throw new Error('ENOTEMPTY')
      return 7
    }
  }

  it('counts each call and its latency in usecs, failures included, and the bytes of successful reads', async () => {
    const clock = new ManualClock()
    const f = new Fake(clock)
    const p = f.read(10)
    await clock.advance(3)
    expect(await p).toHaveLength(2)
    expect(await f.unlink('a')).toBe(7)
    await expect(f.unlink('d', true)).rejects.toThrow('ENOTEMPTY')
    expect(f.stats.set.view()).toEqual({
      read_bytes: { samples: 1, unit: 'bytes', min: 11, max: 11, sum: 11 },
      read: { samples: 1, unit: 'usecs', min: 3000, max: 3000, sum: 3000 },
      unlink: { samples: 1, unit: 'usecs', min: 0, max: 0, sum: 0 },
      rmdir: { samples: 1, unit: 'usecs', min: 0, max: 0, sum: 0 },
    })
  })
})

describe('metrics=ADDR:PORT', () => {
  it('takes an IPv4 address, a host name or a bracketed IPv6 address, and refuses anything else in one line', () => {
    expect(parseListenAddress('m', '127.0.0.1:9100')).toEqual({ host: '127.0.0.1', port: 9100 })
    expect(parseListenAddress('m', 'localhost:1')).toEqual({ host: 'localhost', port: 1 })
    expect(parseListenAddress('m', '[::1]:65535')).toEqual({ host: '::1', port: 65535 })
    for (const bad of ['', '9100', '127.0.0.1', '127.0.0.1:0', '127.0.0.1:65536', '::1:9100', 'a b:1', 'h:1/x'])
      expect(() => parseListenAddress("mount option 'metrics'", bad)).toThrow(/is not ADDR:PORT/)
    expect(parseOptions(['metrics=127.0.0.2:9200']).metrics).toEqual({ host: '127.0.0.2', port: 9200 })
    expect(parseOptions([]).metrics).toBeUndefined()
  })
})
