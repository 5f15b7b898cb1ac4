import { describe, it, expect, afterAll } from 'vitest'
import path from 'node:path'
import { ManualClock } from '../../src/common/clock.js'
import { silentLogger } from '../../src/common/log.js'
import { MAX_BACKGROUND } from '../../src/fuse/fusectl.js'
import { BadRequest } from '../../src/server/admit.js'
import { ConnDeadline, InflightCap, bodyDeadlineMs, frontLimits } from '../../src/server/limits.js'
import { ROOT_FID } from '../../src/server/mdt/namespace.js'
import { MdtBackend } from '../../src/server/mdt/mdt.js'
import { MAX_TRANSNO_JUMP, Target } from '../../src/server/target/target.js'
import { captureLogger } from '../helpers/log.js'
import { tempDir, removeTempDirs } from '../helpers/nodes.js'
import { MDT_NAME, TestClient, testTunables } from '../helpers/target.js'

afterAll(removeTempDirs)

describe('front limits', () => {
  it('follow obd_timeout: the head is due within it, a body by its declared length', () => {
    const l = frontLimits(10_000)
    expect(l.headMs).toBe(10_000)
    expect(bodyDeadlineMs(l, 0)).toBe(10_000)
    expect(bodyDeadlineMs(l, 64 * 1024 * 1024)).toBe(10_000 + 256_000)
    expect(frontLimits(10_000, { headMs: 5 }).headMs).toBe(5)
  })

  it('cap in-flight requests per export above what a well-behaved client can have (FUSE background reads and max_rpcs_in_flight)', () => {
    expect(frontLimits().maxInflightPerExport).toBeGreaterThan(MAX_BACKGROUND + 256)
  })
})

describe('ConnDeadline', () => {
  it('times a head from its first byte and a body by its declared length; busy has none; idle from the last activity', async () => {
    const clock = new ManualClock()
    const fired: string[] = []
    const d = new ConnDeadline(frontLimits(1000, { minBodyBytesPerSec: 1000, idleMs: 5000 }), clock, (w) => fired.push(w))
    d.head()
    await clock.advance(600)
    // The body of 2000 bytes is due 1000 + 2000 ms after the request's first byte, not after its head.
    d.body(2000)
    await clock.advance(2300)
    expect(fired).toEqual([])
    await clock.advance(100)
    expect(fired).toEqual(['request body of 2000 bytes not complete within 3000 ms'])
    d.busy()
    await clock.advance(100_000)
    expect(fired).toHaveLength(1)
    d.idle()
    await clock.advance(4000)
    // Activity puts the idle deadline off; the timer armed first is re-armed, not left to fire.
    d.idle()
    await clock.advance(4000)
    expect(fired).toHaveLength(1)
    await clock.advance(1000)
    expect(fired[1]).toBe('idle for 5000 ms')
    d.head()
    d.stop()
    await clock.advance(10_000)
    expect(fired).toHaveLength(2)
  })

  it('gives unread replies a deadline from when the buffer filled, not put off by later replies', async () => {
    const clock = new ManualClock()
    const fired: string[] = []
    const d = new ConnDeadline(frontLimits(1000, { minBodyBytesPerSec: 1000 }), clock, (w) => fired.push(w))
    d.drain(1000)
    await clock.advance(1500)
    d.drain(5000)
    await clock.advance(500)
    expect(fired).toEqual(['replies of 1000 bytes not read within 2000 ms'])
  })
})

describe('InflightCap', () => {
  it('refuses an export past its cap with 503 EAGAIN, logged once per interval, other exports unaffected; a release makes room', () => {
    const clock = new ManualClock()
    const cap = captureLogger()
    const c = new InflightCap(frontLimits(undefined, { maxInflightPerExport: 2 }), clock, cap.log)
    const r1 = c.enter('spfs-OST0001', 'a')
    c.enter('spfs-OST0001', 'a')
    let refused: unknown
    for (let i = 0; i < 5; i++) {
      try {
        c.enter('spfs-OST0001', 'a')
      } catch (e) {
        refused = e
      }
    }
    expect(refused).toBeInstanceOf(BadRequest)
    expect(refused).toMatchObject({ code: 503, errno: 'EAGAIN', message: expect.stringMatching(/client a has 2 requests in flight at spfs-OST0001 \(cap 2\)/) })
    expect(cap.messages().filter((m) => m.startsWith('refusing requests'))).toHaveLength(1)
    c.enter('spfs-OST0001', 'b')
    c.enter('spfs-OST0002', 'a')
    r1()
    expect(() => c.enter('spfs-OST0001', 'a')).not.toThrow()
  })
})

describe('replay transno bound', () => {
  it('refuses a replay whose transno is absurdly beyond last_committed, without executing it or moving the transno', async () => {
    const dir = await tempDir('lp-transno')
    const clock = new ManualClock()
    const open = async () => {
      const t = await Target.open({ name: MDT_NAME, kind: 'mdt', dir, clock, log: silentLogger, backend: new MdtBackend({ dir: path.join(dir, 'mdtfs'), clock }), replayable: true, tunables: testTunables() })
      t.start()
      return t
    }
    const first = await open()
    const c = new TestClient(first, 'client-a')
    await c.connect()
    await c.ok('sync')
    await first.stop(false)

    const second = await open()
    c.target = second
    await c.connect()
    expect(second.recovering).toBe(true)
    const create = { parent: ROOT_FID, name: 'far', type: 'reg', mode: 0o644, uid: 0, gid: 0, time: 1 }
    const r = await c.call('mdt_create', create, { flags: ['replay'], transno: second.lastCommitted + MAX_TRANSNO_JUMP + 1 })
    expect(r.status).toBe(-71) // EPROTO
    expect(r.error).toMatch(/is beyond last_committed \d+ \+ 4294967296/)
    expect(second.lastTransno).toBe(second.lastCommitted)
    expect((await c.replayDone()).status).toBe(0)
    expect((await c.call('mdt_lookup', { parent: ROOT_FID, name: 'far' })).status).toBe(-2)
    await second.stop(false)
  })
})
