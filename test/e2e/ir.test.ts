import { spawn, type ChildProcess } from 'node:child_process'
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs'
import path from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { startCluster, type ClusterHandle } from '../helpers/cluster.js'
import { importOf } from '../helpers/ctl.js'
import { sh } from '../helpers/sh.js'

/**
 * Imperative recovery (SEMANTICS 9): a target that starts tells the MGS, the MGS tells the
 * mounts (and the MDT's OSP), and their imports reconnect to it at once instead of waiting
 * out their reconnect interval. `-o noir` waits.
 */
const TIMEOUT = 10
/** The mounts' obd_timeout: a 5 s pause between connect cycles, long enough to tell a reconnect on the MGS's word from one on the timer. */
const CLIENT_TIMEOUT = 20
/** Tunables.reconnectIntervalMs at obd_timeout 20 s. */
const RECONNECT_MS = 5000
let c: ClusterHandle
let mnt: string
const cli = path.resolve('bin/lproxy.js')
const env = () => ({ ...process.env, LPROXY_RUN_DIR: c.ws.runDir })
const lp = (args: string) => sh(`node "${cli}" ${args}`, { env: env() })

async function mount(name: string, opts: string): Promise<string> {
  const mp = path.join(c.ws.dir, name)
  mkdirSync(mp)
  await c.ws.ok(['mount', '--mgsnode', c.mgsnode, '--port', String(c.port), '-o', opts, '--log', path.join(c.dir, 'logs', `${name}.log`), mp])
  return mp
}

beforeAll(async () => {
  c = await startCluster({ net: '127.0.52', port: 25200, timeout: TIMEOUT, commitInterval: 1, mmpInterval: 0.2, mount: false })
  mnt = await mount('ir', `timeout=${CLIENT_TIMEOUT}`)
  await sh(`mkdir "${mnt}/on1" && node "${cli}" setstripe -c 1 -i 1 "${mnt}/on1"`, { env: env() })
})

afterAll(async () => {
  // The IR mount is gone already when the noir test ran.
  await c.ws.cli(['umount', mnt])
  await c.down()
})

/** An application that loops on one operation and logs the time each one completed. */
class Loop {
  private readonly stop: string
  private readonly out: string
  private readonly child: ChildProcess

  constructor(name: string, op: string) {
    this.stop = path.join(c.ws.dir, `${name}.stop`)
    this.out = path.join(c.ws.dir, `${name}.out`)
    writeFileSync(this.out, '')
    const script = `import os, sys, time\ni = 0\nwhile not os.path.exists('${this.stop}'):\n    ${op}\n    print(f'{time.time():.3f}', flush=True)\n    i += 1\n`
    this.child = spawn('python3', ['-c', script], { stdio: ['ignore', 'pipe', 'inherit'] })
    this.child.stdout!.on('data', (d: Buffer) => writeFileSync(this.out, d, { flag: 'a' }))
  }

  times(): number[] {
    return readFileSync(this.out, 'utf8').split('\n').filter(Boolean).map((t) => Number(t) * 1000)
  }

  /** Stall seen by the application: from `at` to its first operation completed after it. */
  async stallAfter(at: number): Promise<number> {
    await expect.poll(() => this.times().some((t) => t > at), { timeout: 30_000, interval: 50 }).toBe(true)
    writeFileSync(this.stop, '')
    await new Promise((r) => this.child.once('exit', r))
    return this.times().find((t) => t > at)! - at
  }
}

const writer = (name: string, file: string) => new Loop(name, `fd = os.open('${file}', os.O_WRONLY | os.O_CREAT, 0o644); os.pwrite(fd, b'x' * 4096, (i % 64) * 4096); os.fsync(fd); os.close(fd)`)

async function running(l: Loop): Promise<void> {
  await expect.poll(() => l.times().length, { timeout: 10_000, interval: 50 }).toBeGreaterThan(10)
}

type History = Array<[number, string]>

/** The state history of the import whose get_param name matches, in ms. */
async function history(mount: string, pattern: string): Promise<History> {
  const [p] = JSON.parse(await lp(`get_param --json --mount "${mount}" '${pattern}'`)) as Array<{ value: { state_history: History } }>
  return p!.value.state_history.map(([t, s]) => [t * 1000, s])
}

/** The connect attempt that succeeded last, and the DISCONN it came out of. */
function lastReconnect(h: History): { connecting: number; disconn: number } {
  const full = h.map((x) => x[1]).lastIndexOf('FULL')
  const ci = h.slice(0, full).map((x) => x[1]).lastIndexOf('CONNECTING')
  const di = h.slice(0, ci).map((x) => x[1]).lastIndexOf('DISCONN')
  return { connecting: h[ci]![0], disconn: h[di]![0] }
}

describe('imperative recovery', () => {
  it('an OST failover costs the application well under a second once the partner serves', async () => {
    // An unlink makes the MDT's OSP a client of ost1: its recovery then waits for the OSP too.
    await sh(`echo x > "${mnt}/on1/gone" && sync "${mnt}/on1/gone" && rm "${mnt}/on1/gone"`)
    await expect.poll(async () => JSON.parse(await lp(`df --json --mount "${mnt}"`)).targets[1].statfs.objects, { timeout: 10_000 }).toBe(0)
    const w = writer('ost', `${mnt}/on1/w`)
    await running(w)
    const r = await c.fail('oss1')
    const at = r.moved.find((m) => m.target === 'ost1')!.at
    const stall = await w.stallAfter(at)
    const { connecting, disconn } = lastReconnect(await history(mnt, 'osc.*OST0001*.state'))
    console.log(`OST failover with IR: application stall ${Math.round(stall)} ms after ost1 served on oss2; reconnected ${Math.round(connecting - disconn)} ms into a ${RECONNECT_MS} ms pause`)
    expect(stall).toBeLessThan(1000)
    // The reconnect started on the MGS's word, right after ost1 served, cutting the pause short.
    expect(connecting - at).toBeLessThan(500)
    expect(connecting - disconn).toBeLessThan(RECONNECT_MS - 1000)
    expect(readFileSync(path.join(c.dir, 'logs', 'ir.log'), 'utf8')).toMatch(
      new RegExp(`spfs-OST0001: imperative recovery: instance \\d+ serves at ${c.nids.oss2!.replace(/\./g, '\\.')}`),
    )
    await c.failback('oss1')
  })

  it('the MGS failing over with the MDT: the client follows within one connect cycle of the MGS serving again', async () => {
    const m = new Loop('mdt', `p = '${mnt}/f%d' % (i % 20); os.close(os.open(p, os.O_WRONLY | os.O_CREAT, 0o644)); os.unlink(p)`)
    await running(m)
    const r = await c.fail('mds1')
    const at = r.moved.find((x) => x.target === 'mdt0')!.at
    const stall = await m.stallAfter(at)
    const mgsFull = (await history(mnt, 'mgc.*.state')).filter((x) => x[1] === 'FULL').pop()![0]
    const mdtFull = (await history(mnt, 'mdc.*.state')).filter((x) => x[1] === 'FULL').pop()![0]
    console.log(`MGS+MDT failover: application stall ${Math.round(stall)} ms; MDT import FULL ${Math.round(mdtFull - mgsFull)} ms after the MGS import`)
    expect(mdtFull - mgsFull).toBeLessThan(RECONNECT_MS)
    expect(stall).toBeLessThan(RECONNECT_MS + 1500)
    await c.failback('mds1')
    // Back in recovery on mds1: let this mount finish it, or a new one waits out the window.
    await expect.poll(async () => (await importOf(c.ws.runDir, mnt, 'spfs-MDT0000')).state, { timeout: 15_000 }).toBe('FULL')
  })

  it('with -o noir the import waits out its reconnect interval', async () => {
    await c.ws.ok(['umount', mnt])
    const noir = await mount('noir', `noir,timeout=${CLIENT_TIMEOUT}`)
    const w = writer('noir', `${noir}/on1/w`)
    await running(w)
    const r = await c.fail('oss1')
    const stall = await w.stallAfter(r.moved.find((m) => m.target === 'ost1')!.at)
    const { connecting, disconn } = lastReconnect(await history(noir, 'osc.*OST0001*.state'))
    console.log(`OST failover with noir: application stall ${Math.round(stall)} ms; reconnected ${Math.round(connecting - disconn)} ms into its pause`)
    expect(connecting - disconn).toBeGreaterThan(RECONNECT_MS - 100)
    // ost1 served about 2 s into the 5 s pause: the application waited for the rest of it.
    expect(stall).toBeGreaterThan(1000)
    expect(readFileSync(path.join(c.dir, 'logs', 'noir.log'), 'utf8')).not.toMatch(/imperative recovery/)
    await c.ws.ok(['umount', noir])
    await c.failback('oss1')
  })
})
