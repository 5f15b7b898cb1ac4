import { existsSync, readdirSync, readFileSync } from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { describe, expect, it } from 'vitest'
import { once } from 'node:events'
import type { BenchReport } from '../../src/bench/report.js'
import { onPath } from '../../src/bench/install.js'
import { placements, type SelftestReport } from '../../src/bench/selftest.js'
import { workspace } from '../helpers/cluster.js'
import { pollUntil } from '../helpers/poll.js'

/**
 * `lproxy bench` end to end, tiny: every job on a fresh embedded cluster, a node killed in
 * the middle, every byte verified, the record written, nothing left running. Speed is
 * never asserted: the machine is shared.
 */
describe('lproxy bench', () => {
  it('runs every job across a failover, verifies every byte, writes JSON and SVG, leaves nothing behind', async () => {
    const ws = workspace('lproxy-bench-')
    const out = path.join(ws.dir, 'out')
    // The fault may land in a remount (the writes may be over by then): the fresh client then
    // waits out the partner's recovery window, which a short obd_timeout keeps short.
    const args = ['bench', '--dir', path.join(ws.dir, 'cluster'), '--net', '127.0.60', '--port', '26000', '--timeout', '10', '--size', '32M',
      '--rand-size', '4M', '--rand-seconds', '1', '--meta-files', '50', '--failover-at', '0.2', '--out', out, '--name', 'smoke']
    const r = await ws.cli(args, 100_000)
    expect(r.code, `${r.stdout}\n${r.stderr}`).toBe(0)
    expect(r.stdout).toContain('0 bad pages')

    const rep = JSON.parse(readFileSync(path.join(out, 'smoke.json'), 'utf8')) as BenchReport
    const run = rep.runs[0]!
    expect(run.jobs.map((j) => j.name)).toEqual(['write1', 'read1', 'write4', 'read4', 'randwrite', 'meta'])
    expect(run.verified).toBe(true)
    expect(run.app_errors).toBe(0)
    expect(run.verify.bytes).toBe(32 * 2 ** 20 * 2 + 4 * 2 ** 20)
    const meta = run.jobs.find((j) => j.name === 'meta')!
    expect(meta.phases!.unlink!.ops).toBe(50)
    expect(meta.phases!.verify!.ops).toBe(50)
    expect(meta.bad_pages).toBe(0)
    expect(r.stdout).toContain('50 small files of the metadata mix read back before their unlink, 0 bad')
    expect(run.failover!.error).toBeNull()
    expect(run.failover!.move!.moved).toContainEqual(expect.objectContaining({ target: 'ost1', node: 'oss2' }))
    expect(run.timeline.bytes.reduce((a, b) => a + b, 0)).toBeGreaterThan(0)
    expect(run.samples.imports.some((i) => i.target === 'spfs-OST0001' && i.state === 'FULL')).toBe(true)
    expect(run.replayed).not.toBeNull()
    expect(readFileSync(path.join(out, 'smoke.svg'), 'utf8')).toContain('oss1 fails (hard)')

    expect(ws.processes()).toEqual([])
    expect(ws.mounts()).toEqual([])
  })

  it('refuses what makes no sense before starting anything', async () => {
    const ws = workspace('lproxy-bench-')
    const read = await ws.cli(['bench', '--jobs', 'read1'])
    expect(read.code).toBe(2)
    expect(read.stderr).toMatch(/read1 reads the files write1 writes/)
    const both = await ws.cli(['bench', '--mount', ws.dir, '--failover-at', '1'])
    expect(both.code).toBe(2)
    expect(both.stderr).toMatch(/^lproxy: option '--failover-at <s>' cannot be used with option '--mount <mountpoint>' \(see 'lproxy bench --help'\)\n$/)
    expect(existsSync(path.join(ws.dir, 'out'))).toBe(false)
  })
})

describe('lproxy selftest', () => {
  it('times echo, @tcp and @http round trips on each CPU placement and the metadata mix on floor mounts, writes JSON, leaves nothing behind', async () => {
    const ws = workspace('lproxy-selftest-')
    const out = path.join(ws.dir, 'out')
    const r = await ws.cli(['selftest', '--host', '127.0.60.200', '--port', '26100', '--count', '200', '--repeat', '2', '--meta-files', '100', '--out', out, '--name', 'floor'])
    expect(r.code, r.stderr).toBe(0)
    const rep = JSON.parse(readFileSync(path.join(out, 'floor.json'), 'utf8')) as SelftestReport
    const where = placements(os.cpus().length, onPath('taskset')).map((p) => p.placement)
    expect(rep.figures.map((f) => `${f.kind} ${f.placement}`)).toEqual([...where.map((p) => `echo ${p}`), ...where.map((p) => `tcp ${p}`), ...where.map((p) => `http ${p}`)])
    for (const f of rep.figures) {
      expect(f.runs_us).toHaveLength(2)
      for (const us of f.runs_us) expect(us).toBeGreaterThan(0)
      expect(r.stdout).toContain(`${f.kind.padEnd(8)} ${f.placement.padEnd(9)} ${f.median_us.toFixed(0).padStart(5)} us per round trip`)
    }
    expect(rep.meta.map((m) => m.mode)).toEqual(['binding', 'rpcs', 'rpcs-http'])
    for (const m of rep.meta) {
      expect(m.files).toBe(100)
      // Every small file read back as written, through the binding and the stand-in filesystem.
      expect(m.verified).toBe(true)
      for (const f of [m.creates, m.stats, m.unlinks]) {
        expect(f.runs).toHaveLength(2)
        for (const v of f.runs) expect(v).toBeGreaterThan(0)
        expect(f.errors).toBe(0)
      }
      expect(r.stdout).toContain(`meta  ${m.mode.padEnd(9)} creates ${m.creates.median!.toFixed(0)} (runs:`)
    }
    expect(readdirSync('/proc').filter((e) => /^\d+$/.test(e) && /selftest\.js (serve \w+|floor \w+) 127\.0\.60\.200 26100/.test(cmdline(e)))).toEqual([])
    // The floor mounts are gone, and their directories with them.
    expect(readFileSync('/proc/mounts', 'utf8')).not.toMatch(/lproxy-selftest-/)
    expect(readdirSync('/dev/shm').filter((e) => e.startsWith('lproxy-selftest-'))).toEqual([])

    const bad = await ws.cli(['selftest', '--host', '10.0.0.1'])
    expect(bad.code).toBe(2)
    expect(bad.stderr).toMatch(/--host 10\.0\.0\.1: a loopback address/)
  })

  it('on Ctrl-C in the middle of the mix, ends its processes and its floor mount, removes its directory, exits 130', async () => {
    const ws = workspace('lproxy-selftest-')
    const st = ws.spawnCli(['selftest', '--host', '127.0.60.201', '--port', '26110', '--count', '200', '--repeat', '1', '--meta-files', '1000000', '--out', path.join(ws.dir, 'out')])
    let out = ''
    st.stdout!.on('data', (d: Buffer) => (out += d.toString()))
    st.stderr!.on('data', (d: Buffer) => (out += d.toString()))
    const exit = once(st, 'exit')
    await pollUntil('the mix runs on the floor mount', () => out.includes('floor-binding meta'), 120_000)
    const work = /\/dev\/shm\/lproxy-selftest-[^/\s]+/.exec(readFileSync('/proc/mounts', 'utf8'))?.[0]
    expect(work).toBeDefined()
    st.kill('SIGINT')
    const [code] = await exit
    expect(code, out).toBe(130)
    expect(out).toContain('SIGINT: stopping the workload and cleaning up')
    expect(readFileSync('/proc/mounts', 'utf8')).not.toContain(work)
    expect(existsSync(work!)).toBe(false)
    // The stand-in server, the floor mount's process and the mix's worker.
    expect(readdirSync('/proc').filter((e) => /^\d+$/.test(e) && (cmdline(e).includes(work!) || / 127\.0\.60\.201 26110/.test(cmdline(e)))).map(cmdline)).toEqual([])
  })
})

function cmdline(pid: string): string {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, 'utf8').replace(/\0/g, ' ')
  } catch {
    return ''
  }
}
