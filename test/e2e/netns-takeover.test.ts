import { readFile, stat } from 'node:fs/promises'
import path from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { startCluster, type ClusterHandle } from '../helpers/cluster.js'
import { freshNet, leftNamespaces } from '../helpers/netns.js'
import { sh } from '../helpers/sh.js'

/**
 * Takeover on a real network (`cluster up --netns`): a partitioned OSS still lives and still
 * writes its MMP block through the shared storage, so the partner cannot tell it from a dead
 * one. Fenced first (STONITH), the takeover goes through and the healed node serves nothing;
 * unfenced, MMP refuses the takeover; unfenced and frozen, the takeover goes through and the
 * old owner stops at once when it wakes to a foreign MMP block. The writer sees no error and
 * every byte it wrote is read back in each case.
 */
const WL = path.resolve('test/workloads')
let c: ClusterHandle
let mnt: string

beforeAll(async () => {
  c = await startCluster({ net: freshNet(), port: 33001, netns: true, timeout: 3, commitInterval: 1, mmpInterval: 0.2, recoverySoft: 5 })
  mnt = c.mountpoint!
  await sh(`mkdir "${mnt}/o1" && node bin/lproxy.js setstripe -c 1 -i 1 "${mnt}/o1"`, { env: { ...process.env, LPROXY_RUN_DIR: c.ws.runDir } })
}, 60_000)

afterAll(async () => {
  await c.down()
  expect(leftNamespaces()).toEqual([])
}, 90_000)

/** writer.py on an OST1 file for `seconds`, resolved once it has written something. */
async function writer(name: string, seconds: number): Promise<{ done: Promise<string>; file: string }> {
  const file = `${mnt}/o1/${name}`
  const done = sh(`python3 "${WL}/writer.py" "${file}" ${seconds}`)
  const end = Date.now() + 10_000
  while (((await stat(file).catch(() => null))?.size ?? 0) < 1 << 20) {
    if (Date.now() > end) throw new Error(`the writer of ${file} wrote nothing in 10 s`)
    await new Promise((r) => setTimeout(r, 50))
  }
  return { done, file }
}

async function verified(w: { done: Promise<string>; file: string }): Promise<void> {
  const [digest, blocks] = (await w.done).trim().split(' ')
  expect(Number(blocks)).toBeGreaterThan(8)
  expect((await sh(`sha256sum < "${w.file}"`)).split(' ')[0]).toBe(digest)
}

const heal = (node: string) => c.ws.ok(['cluster', 'heal', node, '--dir', c.dir])
const events = (r: { timeline: Array<{ event: string }> }) => r.timeline.map((e) => e.event)

describe('takeover across a network partition', () => {
  it('without fencing, MMP refuses the takeover from a live partitioned OSS; healed, the client goes on with it', async () => {
    const w = await writer('unfenced', 2)
    const r = await c.ws.cli(['cluster', 'fail', 'oss1', '--partition', '--no-fence', '--deadtime', '1', '--dir', c.dir])
    expect(r.code).not.toBe(0)
    expect(r.stdout).toContain('NOT fenced')
    expect(r.stderr).toMatch(/in use by node oss1 \(.*\): MMP sequence moved/)
    await heal('oss1')
    await verified(w)
    const st = await c.status()
    expect(st.targets.find((t) => t.name === 'ost1')).toMatchObject({ state: 'serving', node: 'oss1' })
  }, 90_000)

  it('fences the partitioned OSS before its partner takes over; healed, it serves nothing', async () => {
    const w = await writer('fenced', 2)
    const r = await c.fail('oss1', { partition: true, deadtime: 1 })
    const ev = events(r)
    const fenced = ev.findIndex((e) => e === 'oss1 fenced (SIGKILL)')
    expect(ev[0]).toMatch(/^oss1's link cut/)
    expect(fenced).toBeGreaterThan(0)
    expect(ev.findIndex((e) => e.startsWith('takeover of ost1 by oss2'))).toBeGreaterThan(fenced)
    expect(r.moved.map((m) => `${m.target}@${m.node}`)).toEqual(['ost1@oss2'])
    await heal('oss1')
    await verified(w)
    const st = await c.status()
    expect(st.nodes.find((n) => n.name === 'oss1')).toMatchObject({ state: 'down', pid: null })
    expect(st.targets.find((t) => t.name === 'ost1')!.node).toBe('oss2')
  }, 90_000)

  it('without fencing, a partitioned and frozen OSS is taken over (MMP sees its block stale), and stops at once on waking to a foreign MMP block', async () => {
    const w = await writer('frozen', 2)
    // oss2 serves both OSTs since the fenced takeover.
    const pid = (await c.status()).nodes.find((n) => n.name === 'oss2')!.pid
    const r = await c.ws.ok(['cluster', 'fail', 'oss2', '--partition', '--hang', '--no-fence', '--deadtime', '1', '--json', '--dir', c.dir])
    expect(events(JSON.parse(r) as { timeline: Array<{ event: string }> }).some((e) => e.includes('NOT fenced'))).toBe(true)
    expect(await heal('oss2')).toContain(`oss2 (pid ${pid}) resumed (SIGCONT)`)
    const log = path.join(c.dir, 'logs', 'oss2.log')
    const end = Date.now() + 10_000
    while (!/spfs-OST0001: kmmpd: device .* is already active/.test(await readFile(log, 'utf8'))) {
      if (Date.now() > end) throw new Error('oss2 did not see the foreign MMP block within 10 s of waking')
      await new Promise((res) => setTimeout(res, 50))
    }
    await verified(w)
    const st = await c.status()
    expect(st.nodes.find((n) => n.name === 'oss2')!.targets).toEqual([])
    expect(st.targets.find((t) => t.name === 'ost1')).toMatchObject({ state: 'serving', node: 'oss1' })
  }, 90_000)
})
