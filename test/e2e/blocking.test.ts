import path from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { startCluster, type ClusterHandle } from '../helpers/cluster.js'
import { importOf } from '../helpers/ctl.js'
import { sh } from '../helpers/sh.js'

/**
 * The request gate in failover mode: I/O to a target that is down waits, with no timeout,
 * however long it takes; nothing else on the mount waits with it; a hung node is found by
 * a missed ping, not by a request that merely waits.
 */
const TIMEOUT = 6
let c: ClusterHandle
let mnt: string
const env = () => ({ ...process.env, LPROXY_RUN_DIR: c.ws.runDir })

beforeAll(async () => {
  c = await startCluster({ net: '127.0.45', port: 24500, timeout: TIMEOUT, commitInterval: 1, mmpInterval: 0.2 })
  mnt = c.mountpoint!
  await sh(`mkdir "${mnt}/on1" "${mnt}/on2"
    node bin/lproxy.js setstripe -c 1 -i 1 "${mnt}/on1"; node bin/lproxy.js setstripe -c 1 -i 2 "${mnt}/on2"
    for i in $(seq 1 12); do head -c 200000 /dev/urandom > "${mnt}/on1/f$i"; head -c 200000 /dev/urandom > "${mnt}/on2/f$i"; done
    sync "${mnt}"/on1/* "${mnt}"/on2/*`, { env: env() })
})

afterAll(async () => {
  await c.down()
})

function startOst1OnOss2(): Promise<string> {
  return c.ws.ok(['start', path.join(c.dir, 'targets', 'ost1'), '--nid', c.nids.oss2!, '--name', 'oss2', '--log', path.join(c.dir, 'logs', 'oss2.log')])
}

describe('failover mode waits, and waits only where it must', () => {
  it('I/O to a dead OST waits longer than 2 x obd_timeout, then succeeds once the partner serves it', async () => {
    const sum = await sh(`sha256sum < "${mnt}/on1/f1"`)
    await c.fail('oss1', { takeover: false })
    const t0 = Date.now()
    // The append goes to a file no blocked reader reads: a reader still reading when it lands would see it.
    const reader = sh(`sha256sum < "${mnt}/on1/f1"; printf more >> "${mnt}/on1/appended"; sync "${mnt}/on1/appended"`)
    let settled = false
    void reader.finally(() => (settled = true))
    // While ost1 is down, the other OST, the MDT and many blocked readers coexist.
    const blocked = Array.from({ length: 24 }, (_, i) => sh(`cat "${mnt}/on1/f${(i % 12) + 1}" | wc -c`))
    const s = Date.now()
    expect(await sh(`ls "${mnt}/on1" | wc -l; cat "${mnt}"/on2/* | wc -c; stat -c %s "${mnt}/on2/f3"; echo new > "${mnt}/on2/new"; cat "${mnt}/on2/new"`)).toBe('12\n2400000\n200000\nnew\n')
    expect(Date.now() - s).toBeLessThan(5000)
    await sh(`sleep ${2 * TIMEOUT + 2}`)
    expect(settled).toBe(false)
    expect((await importOf(c.ws.runDir, mnt, 'spfs-OST0001')).state).not.toBe('FULL')
    await startOst1OnOss2()
    expect(await reader).toBe(sum)
    expect(Date.now() - t0).toBeGreaterThan(2 * TIMEOUT * 1000)
    expect((await Promise.all(blocked)).map((x) => x.trim())).toEqual(Array(24).fill('200000'))
    expect(await sh(`cat "${mnt}/on1/appended"`)).toBe('more')
    await c.failback('oss1')
  })

  it('a hung OSS is detected by a missed ping after a request deadline; the request then completes on the partner', async () => {
    await sh(`cat "${mnt}/on1/f1" >/dev/null`)
    expect((await importOf(c.ws.runDir, mnt, 'spfs-OST0001')).state).toBe('FULL')
    const pid = (await c.status()).nodes.find((n) => n.name === 'oss1')!.pid!
    await c.fail('oss1', { hang: true, takeover: false })
    const t0 = Date.now()
    const writer = sh(`head -c 300000 /dev/urandom > "${mnt}/on1/hung" && sync "${mnt}/on1/hung" && stat -c %s "${mnt}/on1/hung"`)
    // Connections are accepted but nothing answers: only the deadline and the missed ping tell.
    await expect.poll(async () => (await importOf(c.ws.runDir, mnt, 'spfs-OST0001')).state, { timeout: (TIMEOUT + 10) * 1000, interval: 250 }).not.toBe('FULL')
    expect(Date.now() - t0).toBeGreaterThan(TIMEOUT * 1000 - 500)
    // The HA layer fences the hung node, then the partner takes over.
    process.kill(pid, 'SIGKILL')
    await startOst1OnOss2()
    expect(await writer).toBe('300000\n')
    await c.failback('oss1')
  })

  it('a request that legitimately waits at the server (a long recovery) causes no reconnect storm', async () => {
    const before = await importOf(c.ws.runDir, mnt, 'spfs-MDT0000')
    await c.fail('mdt0')
    const t0 = Date.now()
    await sh(`ls "${mnt}" >/dev/null`)
    const after = await importOf(c.ws.runDir, mnt, 'spfs-MDT0000')
    expect(after.state).toBe('FULL')
    // No storm: at most one cycle through the list (dead mds1, then mds2) per reconnect interval
    // (obd_timeout/4) while mds2 takes over, however long a loaded machine makes that take.
    const elapsed = Date.now() - t0
    const cycles = 2 + Math.ceil(elapsed / ((TIMEOUT * 1000) / 4))
    expect(after.connection_attempts - before.connection_attempts).toBeLessThanOrEqual(2 * cycles)
    expect(elapsed).toBeLessThan(60_000)
    await c.failback('mds1')
  })
})
