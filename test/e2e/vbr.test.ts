import { mkdir, readFile } from 'node:fs/promises'
import path from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { startCluster, type ClusterHandle } from '../helpers/cluster.js'
import { sh } from '../helpers/sh.js'

/**
 * Version-based recovery end to end (Lustre's replay-vbr.sh): a mount killed with the MDS
 * loses its work, and the survivor keeps its own even when it came later in transno order.
 */
let c: ClusterHandle
let mnt: string
let mnt2: string

async function mountSecond(): Promise<void> {
  await mkdir(mnt2, { recursive: true })
  await c.ws.ok(['mount', '--mgsnode', c.mgsnode, '--port', String(c.port), '-o', 'timeout=10', '--log', path.join(c.dir, 'logs', 'client2.log'), mnt2])
}

/** SIGKILL the second mount's daemon (a client dying with the MDS). */
async function killSecond(): Promise<void> {
  const pid = Number((await sh(`pgrep -f "client/daemon.js.*--mountpoint ${mnt2}"`)).trim())
  expect(pid).toBeGreaterThan(0)
  await sh(`kill -9 ${pid}; fusermount -uz "${mnt2}"`)
}

beforeAll(async () => {
  c = await startCluster({ net: '127.0.81', port: 28100, timeout: 10, commitInterval: 1, mmpInterval: 0.2, recoverySoft: 6 })
  mnt = c.mountpoint!
  mnt2 = path.join(c.dir, 'mnt2')
  await mountSecond()
})

afterAll(async () => {
  await c.ws.cli(['umount', mnt2]) // mounted still if the test failed before killing it
  await c.down()
})

describe('version-based recovery', () => {
  it("a client killed with the MDS loses its work; the survivor's later create is kept and it is not evicted", async () => {
    await sh(`mkdir "${mnt}/v1"`)
    await c.ws.ok(['barrier', path.join(c.dir, 'targets', 'mdt0')])
    // The doomed mount first, the survivor after it: the survivor's transno is behind the lost one.
    await sh(`touch "${mnt2}/v1/two" && touch "${mnt}/v1/one"`)
    await killSecond()
    await c.fail('mdt0')
    expect(await sh(`ls "${mnt}/v1"`)).toBe('one\n')
    const log = await readFile(path.join(c.dir, 'logs', 'mds2.log'), 'utf8')
    expect(log).toMatch(/Recovery over after \d+:\d\d, of 2 clients 1 recovered and 1 were evicted/)
    const st = JSON.parse(await c.ws.ok(['recovery-status', '--json', path.join(c.dir, 'targets', 'mdt0')])) as Record<string, unknown>
    expect(st).toMatchObject({ status: 'COMPLETE', completed_clients: '1/2', evicted_clients: 1, vbr_failed: 0, VBR: 'ENABLED' })
    // Every replay of the survivor (the create, its close, ...) ran past the dead client's transnos.
    expect(st.vbr_replayed).toBeGreaterThan(0)
    expect(st.vbr_replayed).toBe(st.replayed_requests)
    // Still connected: it goes on working.
    await sh(`touch "${mnt}/v1/three"`)
    expect(await sh(`ls "${mnt}/v1"`)).toBe('one\nthree\n')
    await c.failback('mds1')
  })

  it("a new file after a lost create never shows the lost file's data: its FID is never given again", async () => {
    await mountSecond()
    await sh(`mkdir "${mnt}/v2"`)
    await c.ws.ok(['barrier', path.join(c.dir, 'targets', 'mdt0')])
    // The OSTs commit the data; the MDT's create is lost with the barrier.
    await sh(`head -c 1048576 /dev/urandom > "${mnt2}/v2/lost" && sync "${mnt2}/v2/lost"`)
    const lostIno = (await sh(`stat -c %i "${mnt2}/v2/lost"`)).trim()
    await killSecond()
    await c.fail('mdt0')
    await sh(`touch "${mnt}/v2/new"`)
    expect(await sh(`ls "${mnt}/v2"`)).toBe('new\n')
    expect((await sh(`stat -c %s "${mnt}/v2/new"`)).trim()).toBe('0')
    expect((await sh(`stat -c %i "${mnt}/v2/new"`)).trim()).not.toBe(lostIno)
    await c.failback('mds1')
  })
})
