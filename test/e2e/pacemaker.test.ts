import { execFile, spawn, spawnSync, type ChildProcess } from 'node:child_process'
import { existsSync, rmSync, statSync } from 'node:fs'
import path from 'node:path'
import { afterAll, beforeAll, describe, expect, test } from 'vitest'
import { workspace, type Workspace } from '../helpers/cluster.js'
import { ensureHaPackages } from '../helpers/ha.js'
import { logTails, noInternalErrors } from '../helpers/log.js'
import { sh } from '../helpers/sh.js'

/**
 * A real two-node Corosync/Pacemaker cluster on this machine (test/ha/lab.sh, ha/README.md):
 * ha1 and ha2 each in their own network, mount and UTS namespace, mdt0 and ost1 at home on
 * ha1, ost2 on ha2, all ocf:lproxy:target resources, fence_lproxy as STONITH. A client in a
 * third namespace writes a file striped over both OSTs while ha2 dies, then (powered on and
 * back with ost2) while ha2 is cut off the network: each time Pacemaker fences ha2 and starts
 * ost2 on ha1, and the writer sees a stall, no error, and every byte it wrote.
 */
const LAB = path.resolve('test/ha/lab.sh')
const WRITER = path.resolve('test/workloads/writer.py')
const LPROXY = path.resolve('bin/lproxy.js')
const NID2 = '10.121.0.2@tcp'
const FENCE_DIR = '/var/lib/lproxy/fence'
const MARKERS = ['10.121.0.1_tcp.off', '10.121.0.2_tcp.off'].map((f) => path.join(FENCE_DIR, f))

let ws: Workspace
let mnt: string
const nodes = new Map<string, ChildProcess>()

function lab(...args: string[]): Promise<string> {
  return new Promise((resolve, reject) =>
    execFile('sh', [LAB, ...args], { timeout: 120_000 }, (e, out, err) => (e ? reject(new Error(`lab.sh ${args.join(' ')}: ${err || e.message}`)) : resolve(out))),
  )
}

function startNode(n: string): void {
  nodes.set(n, spawn('sh', [LAB, 'node', ws.dir, n], { stdio: 'ignore' }))
}

/** Where Pacemaker runs a resource, asked on ha1. */
async function location(rsc: string): Promise<string | null> {
  const out = await lab('in', 'ha1', 'crm_resource', '--locate', '-r', rsc).catch(() => '')
  return /is running on: (\S+)/.exec(out)?.[1] ?? null
}

async function waitPlaced(want: Record<string, string>, ms: number): Promise<void> {
  const end = Date.now() + ms
  for (;;) {
    const got: Record<string, string | null> = {}
    for (const r of Object.keys(want)) got[r] = await location(r)
    if (Object.entries(want).every(([r, n]) => got[r] === n)) return
    if (Date.now() > end) throw new Error(`resources not placed as ${JSON.stringify(want)} after ${ms} ms: ${JSON.stringify(got)}`)
    await new Promise((r) => setTimeout(r, 500))
  }
}

const clientEnv = () => ({ ...process.env, LPROXY_RUN_DIR: path.join(ws.dir, 'crun') })

beforeAll(async () => {
  ensureHaPackages()
  spawnSync('node', [LPROXY, 'ha', 'install-agents'])
  ws = workspace('lproxy-pcmk-')
  mnt = path.join(ws.dir, 'mnt')
  // A previous run that died may have left its namespaces and markers.
  await lab('down', ws.dir)
  for (const m of MARKERS) rmSync(m, { force: true })
  await lab('net', ws.dir)
  await lab('targets', ws.dir)
  startNode('ha1')
  startNode('ha2')
  await waitPlaced({ mdt0: 'ha1', ost1: 'ha1', ost2: 'ha2' }, 240_000)
  await mountWithBothOsts()
  await sh(`mkdir "${mnt}/w" && node "${LPROXY}" setstripe -c 2 -S 256k "${mnt}/w"`, { env: clientEnv() })
}, 420_000)

/**
 * Pacemaker may start an OST before the MGS (the order is optional, so that a moving MDT
 * does not restart the OSTs); it registers a moment later, and a client learns the OSTs at
 * mount: mount again until it has both.
 */
async function mountWithBothOsts(): Promise<void> {
  const end = Date.now() + 120_000
  await sh(`mkdir -p "${mnt}"`)
  for (;;) {
    await sh(`nsenter --net=/run/netns/lpha-cl node "${LPROXY}" mount "${mnt}" --mgsnode 10.121.0.1@tcp:${NID2} --port 32510 --log "${ws.dir}/client.log" -o timeout=5`, {
      env: clientEnv(),
    })
    if ((await sh(`node "${LPROXY}" df`, { env: clientEnv() })).includes('[OST:2]')) return
    await sh(`node "${LPROXY}" umount "${mnt}"`, { env: clientEnv() })
    if (Date.now() > end) throw new Error('the client never saw lpha-OST0002 registered')
  }
}

/** A new file is striped over both OSTs once the MDT has ost2 too (after a move, it reconnects). */
async function waitStripedOverBoth(probe: string): Promise<void> {
  const end = Date.now() + 120_000
  for (let i = 0; ; i++) {
    const f = `${mnt}/w/${probe}-${i}`
    const out = await sh(`touch "${f}" && node "${LPROXY}" getstripe "${f}" && rm "${f}"`, { env: clientEnv() })
    if (/lmm_stripe_count:\s+2/.test(out)) return
    if (Date.now() > end) {
      // What the client's imports say and last logged: why one OST is not in use.
      const status = await sh(`node "${LPROXY}" status`, { env: clientEnv() }).catch((e: Error) => e.message)
      throw new Error(`new files are not striped over both OSTs: ${out}\n${status}\n${logTails([path.join(ws.dir, 'client.log')])}`)
    }
    await new Promise((r) => setTimeout(r, 1000))
  }
}

afterAll(async () => {
  if (!ws) return
  await sh(`node "${LPROXY}" umount "${mnt}"`, { env: clientEnv(), timeoutMs: 30_000 }).catch(() => spawnSync('fusermount', ['-uz', mnt]))
  await lab('heal', 'ha2').catch(() => undefined)
  await lab('down', ws.dir)
  for (const n of nodes.values()) n.kill('SIGKILL')
  for (const m of MARKERS) rmSync(m, { force: true })
  try {
    noInternalErrors(path.join(ws.dir, 'client.log'))
  } finally {
    ws.destroy()
  }
}, 120_000)

/** A writer of the striped file for `secs`, the fault `at` seconds in; then the checks. */
async function rideThrough(file: string, fault: () => Promise<unknown>): Promise<{ stall: number; fencedMs: number; servedMs: number }> {
  await waitStripedOverBoth(`probe-${file}`)
  const writer = sh(`python3 "${WRITER}" "${mnt}/w/${file}" 20`, { timeoutMs: 400_000 })
  await new Promise((r) => setTimeout(r, 3000))
  const t0 = Date.now()
  await fault()
  // Fenced: the marker fence_lproxy off leaves; then ost2 served on ha1.
  let fencedMs = -1
  const end = Date.now() + 240_000
  while (Date.now() < end && fencedMs < 0) {
    if (existsSync(MARKERS[1]!)) fencedMs = statSync(MARKERS[1]!).mtimeMs - t0
    else await new Promise((r) => setTimeout(r, 200))
  }
  expect(fencedMs).toBeGreaterThanOrEqual(0)
  await waitPlaced({ ost2: 'ha1' }, 240_000)
  const servedMs = Date.now() - t0
  const [digest, blocks, worst] = (await writer).trim().split(' ')
  // Half of what it wrote went to ost2, the OST that moved.
  expect(await sh(`node "${LPROXY}" getstripe "${mnt}/w/${file}"`, { env: clientEnv() })).toMatch(/lmm_stripe_count:\s+2\n/)
  expect(Number(blocks)).toBeGreaterThan(20)
  expect(Number(worst)).toBeGreaterThan(0.5)
  // Every byte the application wrote is there, read back through the client.
  expect((await sh(`sha256sum < "${mnt}/w/${file}"`)).split(' ')[0]).toBe(digest)
  // ha2 is powered off: nothing of it runs, its lproxy node included.
  expect((await sh('ip netns pids lpha-ha2')).trim()).toBe('')
  const stall = Number(worst)
  process.stdout.write(`${file}: fenced at +${(fencedMs / 1000).toFixed(1)} s, ost2 served on ha1 by +${(servedMs / 1000).toFixed(1)} s, writer's longest stall ${stall} s\n`)
  return { stall, fencedMs, servedMs }
}

describe('Pacemaker moves the targets of a failed node, after fencing it', () => {
  test('ha2 dies: fenced, ost2 moves to ha1, the writer rides through', async () => {
    await rideThrough('crash', () => lab('crash', 'ha2'))
    expect(await location('mdt0')).toBe('ha1')
  }, 600_000)

  test('ha2 powered on and back with ost2, then cut off the network: fenced, ost2 moves to ha1 again', async () => {
    await sh(`/usr/sbin/fence_lproxy -o on -n ${NID2}`)
    expect(existsSync(MARKERS[1]!)).toBe(false)
    startNode('ha2')
    // Its location preference brings ost2 home (a clean stop on ha1, a start on ha2).
    await waitPlaced({ ost2: 'ha2' }, 300_000)
    await rideThrough('partition', () => lab('cut', 'ha2'))
    // ha1 was never fenced: ha2's attempt waits pcmk_delay_base, and ha2 was gone before.
    expect(existsSync(MARKERS[0]!)).toBe(false)
    expect(await location('mdt0')).toBe('ha1')
    expect(await location('ost1')).toBe('ha1')
  }, 900_000)
})
