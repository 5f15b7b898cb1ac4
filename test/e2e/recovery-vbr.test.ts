import { mkdir, readdir, readFile } from 'node:fs/promises'
import path from 'node:path'
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest'
import { startCluster, type ClusterHandle } from '../helpers/cluster.js'
import { sh } from '../helpers/sh.js'

/**
 * Lustre's replay-vbr.sh with two real mounts of one filesystem: a replay barrier on the MDT,
 * the second mount's daemon SIGKILLed, the MDS failed over. The survivor keeps its own work
 * and is not evicted; what the dead mount did is gone, and leaves nothing behind.
 */
let c: ClusterHandle
let mnt: string
let mnt2: string

async function mountSecond(): Promise<void> {
  await mkdir(mnt2, { recursive: true })
  await c.ws.ok(['mount', '--mgsnode', c.mgsnode, '--port', String(c.port), '-o', 'timeout=10', '--log', path.join(c.dir, 'logs', 'client2.log'), mnt2])
}

/** The second mount dies: its daemon SIGKILLed (no disconnect), its mount detached. */
async function killSecond(): Promise<void> {
  const daemon = (await c.status()).mount.pid
  const second = Number((await sh(`pgrep -f "client/daemon.js.*--mountpoint ${mnt2}"`)).trim())
  expect(second).toBeGreaterThan(0)
  expect(second).not.toBe(daemon)
  await sh(`kill -9 ${second}; fusermount -uz "${mnt2}"`)
}

async function barrier(target: 'mdt0' | 'ost1'): Promise<void> {
  await c.ws.ok(['barrier', path.join(c.dir, 'targets', target)])
}

/** Object files of `fid` left on either OST. */
async function objectsOf(fid: number): Promise<string[]> {
  const out: string[] = []
  const walk = async (dir: string): Promise<void> => {
    for (const e of await readdir(dir, { withFileTypes: true })) {
      const p = path.join(dir, e.name)
      if (e.isDirectory()) await walk(p)
      else if (new RegExp(`^${fid}(\\D|$)`).test(e.name)) out.push(p)
    }
  }
  for (const ost of ['ost1', 'ost2']) await walk(path.join(c.dir, 'targets', ost, 'ost', 'O'))
  return out
}

beforeAll(async () => {
  c = await startCluster({ net: '127.0.87', port: 28700, timeout: 10, commitInterval: 0.5, mmpInterval: 0.2, recoverySoft: 6 })
  mnt = c.mountpoint!
  mnt2 = path.join(c.dir, 'mnt2')
  await mountSecond()
})

// Each test starts from every target at home and both mounts up, whatever the last one left.
afterEach(async () => {
  const st = await c.status()
  for (const node of new Set(st.targets.filter((t) => t.node !== t.primary).map((t) => t.primary))) await c.failback(node)
  if (!c.ws.mounts().includes(mnt2)) await mountSecond()
})

afterAll(async () => {
  await c.ws.cli(['umount', mnt2])
  await c.down()
})

describe('a mount killed with the MDS', () => {
  it("the survivor's create is kept and it is not evicted; the dead mount's create is gone", async () => {
    await sh(`mkdir "${mnt}/v1"`)
    await barrier('mdt0')
    await sh(`touch "${mnt2}/v1/two" && echo survivor > "${mnt}/v1/one"`)
    const ino = (await sh(`stat -c %i "${mnt}/v1/one"`)).trim()
    await killSecond()
    await c.fail('mdt0')
    expect(await sh(`ls "${mnt}/v1"`)).toBe('one\n')
    expect(await sh(`cat "${mnt}/v1/one"; stat -c %i "${mnt}/v1/one"`)).toBe(`survivor\n${ino}\n`)
    const log = await readFile(path.join(c.dir, 'logs', 'mds2.log'), 'utf8')
    expect(log).toMatch(/Recovery over after \d+:\d\d, of 2 clients 1 recovered and 1 were evicted/)
    const st = JSON.parse(await c.ws.ok(['recovery-status', '--json', path.join(c.dir, 'targets', 'mdt0')])) as Record<string, unknown>
    expect(st).toMatchObject({ status: 'COMPLETE', completed_clients: '1/2', evicted_clients: 1, vbr_failed: 0, VBR: 'ENABLED' })
    // Every replay of the survivor (the create, its write, its close) ran past the dead mount's transnos.
    expect(st.vbr_replayed).toBeGreaterThan(0)
    expect(st.vbr_replayed).toBe(st.replayed_requests)
    // Still connected: it goes on working.
    await sh(`touch "${mnt}/v1/three"`)
    expect(await sh(`ls "${mnt}/v1"`)).toBe('one\nthree\n')
  })

  it('a new file after a lost create is empty, and no object of the lost file is left', async () => {
    await sh(`mkdir "${mnt}/n"`)
    await barrier('mdt0')
    // The OSTs commit the bytes (no barrier there); the MDT create dies with the barrier.
    await sh(`head -c 1048576 /dev/urandom > "${mnt2}/n/lost" && sync "${mnt2}/n/lost"`)
    const lost = Number((await sh(`stat -c %i "${mnt2}/n/lost"`)).trim())
    expect(await objectsOf(lost)).not.toEqual([])
    await killSecond()
    await c.fail('mdt0')
    await sh(`touch "${mnt}/n/new"`)
    expect(Number((await sh(`stat -c %i "${mnt}/n/new"`)).trim())).not.toBe(lost)
    expect(await sh(`ls "${mnt}/n"; stat -c %s "${mnt}/n/new"; wc -c < "${mnt}/n/new"`)).toBe('new\n0\n0\n')
    await vi.waitFor(async () => expect(await objectsOf(lost)).toEqual([]), { timeout: 20_000, interval: 200 })
  })
})

describe('two live mounts, barriers on the MDT and an OST at once', () => {
  it('interleaved creates and writes of both survive the MDS and the OSS failing, byte for byte', async () => {
    await sh(`mkdir "${mnt}/w" && node "${path.resolve('bin/lproxy.js')}" setstripe -c 1 -i 1 "${mnt}/w"`, { env: { ...process.env, LPROXY_RUN_DIR: c.ws.runDir } })
    await barrier('mdt0')
    await barrier('ost1')
    for (let i = 0; i < 4; i++) {
      await sh(`head -c ${50000 + i * 30011} /dev/urandom > "${mnt}/w/a${i}"`)
      await sh(`head -c ${70000 + i * 20011} /dev/urandom > "${mnt2}/w/b${i}"`)
    }
    await sh(`mv "${mnt2}/w/a0" "${mnt2}/w/a0-moved" && rm "${mnt}/w/b1"`)
    const before = await sh(`cd "${mnt}/w" && ls && sha256sum *`)
    await c.fail('mdt0')
    await c.fail('ost1')
    expect(await sh(`cd "${mnt}/w" && ls && sha256sum *`)).toBe(before)
    expect(await sh(`cd "${mnt2}/w" && ls && sha256sum *`)).toBe(before)
  })
})
