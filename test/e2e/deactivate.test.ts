import { existsSync, mkdirSync } from 'node:fs'
import path from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { startCluster, type ClusterHandle } from '../helpers/cluster.js'
import { importOf } from '../helpers/ctl.js'
import { ostObjects } from '../helpers/objects.js'
import { sh, shFails } from '../helpers/sh.js'

/**
 * deactivate / activate (SEMANTICS 7): an OST taken out of service fails its I/O at once,
 * even I/O already blocked on its dead node; the namespace and the other OST carry on; the
 * permanent form reaches every mount through the MGS; nothing of what is unlinked meanwhile
 * leaks once the OST is back and active.
 */
const TIMEOUT = 10
let c: ClusterHandle
let mnt: string
const cli = path.resolve('bin/lproxy.js')
const env = () => ({ ...process.env, LPROXY_RUN_DIR: c.ws.runDir })
const lp = (args: string) => sh(`node "${cli}" ${args}`, { env: env() })
const ost2Objects = () => ostObjects([c.nids.oss2!, c.nids.oss1!], c.port, 'spfs-OST0002')
const sums: Record<string, string> = {}

beforeAll(async () => {
  c = await startCluster({ net: '127.0.51', port: 25100, timeout: TIMEOUT, commitInterval: 1, mmpInterval: 0.2, recoverySoft: 3 })
  mnt = c.mountpoint!
  await sh(`mkdir "${mnt}/on2" "${mnt}/s12"
    node "${cli}" setstripe -c 1 -i 2 "${mnt}/on2"; node "${cli}" setstripe -c 2 -i 1 "${mnt}/s12"
    for i in 1 2 3 4 5 6; do head -c 200000 /dev/urandom > "${mnt}/on2/a$i"; done
    head -c 4194304 /dev/urandom > "${mnt}/s12/big"
    sync "${mnt}"/on2/* "${mnt}/s12/big"`, { env: env() })
  for (const f of ['on2/a2', 'on2/a3', 'on2/a6', 's12/big']) sums[f] = await sh(`sha256sum < "${mnt}/${f}"`)
})

afterAll(async () => {
  await c.down()
})

describe('deactivate', () => {
  it('wakes I/O blocked on a dead OST with EIO at once, long before any timeout', async () => {
    const go = path.join(c.ws.dir, 'go')
    // Opened while all is well; the read of the second stripe (ost2) comes after ost2's node died.
    const reader = sh(`python3 -c "
import os, time
fd = os.open('${mnt}/s12/big', os.O_RDONLY)
open('${c.ws.dir}/opened', 'w').close()
while not os.path.exists('${go}'): time.sleep(0.02)
t0 = time.time()
try:
    os.pread(fd, 65536, 1536 * 1024); print('read ok', t0, time.time())
except OSError as e:
    print(e.errno, t0, time.time())
"`)
    await expect.poll(() => existsSync(path.join(c.ws.dir, 'opened')), { timeout: 10_000 }).toBe(true)
    await c.fail('oss2', { takeover: false })
    await sh(`touch "${go}"`)
    await expect.poll(async () => (await importOf(c.ws.runDir, mnt, 'spfs-OST0002')).delayed, { timeout: 10_000, interval: 100 }).toBeGreaterThan(0)
    let done = false
    void reader.finally(() => (done = true))
    await sh('sleep 1')
    expect(done).toBe(false)
    const t0 = Date.now()
    expect(await lp(`deactivate ost2 --mount "${mnt}"`)).toBe(`spfs-OST0002: deactivated on ${mnt}\n`)
    const [errno, started, failed] = (await reader).trim().split(' ')
    expect(errno).toBe('5')
    // Blocked for over a second, then failed within moments of the deactivate command (which
    // includes starting the CLI): no request deadline (10 s) or reconnect (2.5 s) in between.
    expect(Number(failed) - Number(started)).toBeGreaterThan(1)
    expect(Number(failed) * 1000 - t0).toBeLessThan(2000)
  })

  it('keeps the namespace working, fails stripes on the OST at once, places new files elsewhere', async () => {
    const t0 = Date.now()
    // A file wholly on ost2 counts as empty; a striped one keeps what ost1 holds (chunks 0 and 2).
    expect(await sh(`stat -c %s "${mnt}/on2/a1" "${mnt}/s12/big"; ls "${mnt}/on2" | wc -l`)).toBe('0\n3145728\n6\n')
    await sh(`mv "${mnt}/on2/a1" "${mnt}/on2/a1m"; chmod 600 "${mnt}/on2/a2"; chown 1:1 "${mnt}/on2/a3"; rm "${mnt}/on2/a4"`)
    expect(await sh(`stat -c '%n %a %u' "${mnt}"/on2/*`)).toBe(
      [`${mnt}/on2/a1m 644 0`, `${mnt}/on2/a2 600 0`, `${mnt}/on2/a3 644 1`, `${mnt}/on2/a5 644 0`, `${mnt}/on2/a6 644 0`].join('\n') + '\n',
    )
    expect(await shFails(`dd if="${mnt}/s12/big" of=/dev/null bs=64k skip=16 count=1`)).toMatch(/Input\/output error/)
    // The write itself fails: nothing is taken into the write-back cache for an inactive OST.
    expect(await shFails(`dd if=/dev/zero of="${mnt}/s12/big" bs=64k seek=16 count=1 conv=notrunc`)).toMatch(/error writing.*Input\/output error/)
    expect(Date.now() - t0).toBeLessThan(8000)
    await sh(`for i in 1 2 3 4; do echo new > "${mnt}/on2/new$i"; echo new > "${mnt}/new$i"; done`)
    for (const f of ['on2/new1', 'on2/new2', 'on2/new3', 'on2/new4', 'new1', 'new2', 'new3', 'new4'])
      expect(await lp(`getstripe "${mnt}/${f}"`)).toMatch(/lmm_stripe_count:  1\n[^]*lmm_stripe_offset: 1\n/)
    expect(await lp(`dl --mount "${mnt}"`)).toMatch(/^ {2}4 IN osc spfs-OST0002-osc-\S+ \S+ \d+$/m)
    expect(await lp(`df --mount "${mnt}"`)).not.toMatch(/OST0002/)
    expect(await lp(`df -v --mount "${mnt}"`)).toMatch(/^spfs-OST0002_UUID {4}: inactive device$/m)
    expect(await lp(`get_param -n --mount "${mnt}" 'osc.*OST0002*.active'`)).toBe('0\n')
  })

  it('--permanent reaches a mounted client and a new mount; unlinked objects are held, then destroyed on activate', async () => {
    const m2 = path.join(c.ws.dir, 'm2')
    const m3 = path.join(c.ws.dir, 'm3')
    mkdirSync(m2)
    mkdirSync(m3)
    await c.ws.ok(['mount', '--mgsnode', c.mgsnode, '--port', String(c.port), '-o', `timeout=${TIMEOUT}`, '--log', path.join(c.dir, 'logs', 'm2.log'), m2])
    expect(await lp(`dl --mount "${m2}"`)).toMatch(/^ {2}4 UP osc spfs-OST0002/m)
    await lp(`deactivate ost2 --permanent --mount "${mnt}"`)
    await expect.poll(() => lp(`dl --mount "${m2}"`), { timeout: 5000, interval: 100 }).toMatch(/^ {2}4 IN osc spfs-OST0002/m)
    await c.ws.ok(['mount', '--mgsnode', c.mgsnode, '--port', String(c.port), '-o', `timeout=${TIMEOUT}`, '--log', path.join(c.dir, 'logs', 'm3.log'), m3])
    expect(await lp(`dl --mount "${m3}"`)).toMatch(/^ {2}4 IN osc spfs-OST0002/m)
    expect(await sh(`stat -c %s "${m3}/on2/a6"`)).toBe('0\n')
    await sh(`rm "${m2}/on2/a5"`)
    // ost2 comes back while still deactivated: the MDT holds the destroys of a4 and a5.
    await c.failback('oss2')
    // a1..a6 and the second stripe of big.
    expect(await ost2Objects()).toBe(7)
    await sh('sleep 2')
    expect(await ost2Objects()).toBe(7)
    expect(await lp(`activate ost2 --permanent --mount "${mnt}"`)).toBe(`spfs-OST0002: activated on ${mnt}, and permanently (recorded on the MGS)\n`)
    await expect.poll(ost2Objects, { timeout: 15_000, interval: 250 }).toBe(5)
    for (const m of [m2, m3]) await expect.poll(() => lp(`dl --mount "${m}"`), { timeout: 5000, interval: 100 }).toMatch(/^ {2}4 UP osc spfs-OST0002/m)
    // Activated, an import stays invalid (its I/O fails) until it has reconnected, as Lustre's does.
    for (const m of [mnt, m2, m3]) await expect.poll(async () => (await importOf(c.ws.runDir, m, 'spfs-OST0002')).state, { timeout: 10_000 }).toBe('FULL')
    // Everything on ost2 reads as it was written, on every mount.
    for (const m of [mnt, m2, m3]) for (const [f, sum] of Object.entries(sums)) expect(await sh(`sha256sum < "${m}/${f}"`), `${m}/${f}`).toBe(sum)
    expect(await sh(`stat -c %s "${m3}/on2/a1m"`)).toBe('200000\n')
    await c.ws.ok(['umount', m2])
    await c.ws.ok(['umount', m3])
  })
})
