import { execFile, spawnSync } from 'node:child_process'
import { mkdirSync, readFileSync } from 'node:fs'
import path from 'node:path'
import { afterAll, beforeAll, describe, expect, test } from 'vitest'
import { workspace, type Workspace } from '../helpers/cluster.js'
import { ensureHaPackages } from '../helpers/ha.js'

/**
 * What Pacemaker needs of lproxy, driven the way Pacemaker drives it: `target-status` and its
 * OCF exit codes, starts and stops repeated, ocf-tester on ocf:lproxy:target, and fence_lproxy
 * (stdin and command-line options, off/on/status/list/monitor, its metadata).
 */
const NET = '127.0.121'
const PORT = 32500
const nid = (n: number) => `${NET}.${n}@tcp`
const AGENT = path.resolve('ha/ocf/target')
const FENCE = path.resolve('ha/fence/fence_lproxy')

let ws: Workspace
let mdt: string
let env: NodeJS.ProcessEnv

interface Run {
  code: number
  out: string
  err: string
}

function run(file: string, args: string[], input?: string, timeoutMs = 240_000): Promise<Run> {
  return new Promise((resolve) => {
    const child = execFile(file, args, { env, timeout: timeoutMs, maxBuffer: 16 * 1024 * 1024 }, (e, out, err) =>
      resolve({ code: e ? (typeof e.code === 'number' ? e.code : 128) : 0, out, err }),
    )
    child.stdin!.end(input ?? '')
  })
}

const fence = (args: string[], input?: string) => run(FENCE, args, input)
const status = (args: string[] = []) => ws.cli(['target-status', mdt, ...args])

beforeAll(() => {
  ensureHaPackages()
  ws = workspace('lproxy-ha-')
  mdt = path.join(ws.dir, 'mdt0')
  env = { ...process.env, LPROXY_RUN_DIR: ws.runDir, LPROXY_FENCE_DIR: path.join(ws.dir, 'fence') }
  // cli() passes process.env on: the fence markers of this test stay in its workspace.
  process.env.LPROXY_FENCE_DIR = env.LPROXY_FENCE_DIR
})

afterAll(() => {
  delete process.env.LPROXY_FENCE_DIR
})

describe('target-status, start and stop as an HA manager uses them', () => {
  test('exit 1 for what is not a target, 7 before any start', async () => {
    mkdirSync(path.join(ws.dir, 'empty'))
    const r = await ws.cli(['target-status', path.join(ws.dir, 'empty')])
    expect(r.code).toBe(1)
    expect(r.stderr).toMatch(/does not hold an lproxy target/)
    await ws.ok(['format', mdt, '--fsname', 'hafs', '--mgs', '--mdt', '--port', String(PORT), '--param', 'mmp_interval=0.1'])
    const s = await status()
    expect(s.code).toBe(7)
    expect(s.stdout).toMatch(/is not served: it was never started/)
  })

  test('0 while served here, 7 for another NID; a second start and stop change nothing', async () => {
    expect(await ws.ok(['start', mdt, '--nid', nid(1)])).toMatch(/^MGS, hafs-MDT0000: serving on 127\.0\.121\.1@tcp/)
    const [pid] = ws.processes()
    expect(await ws.ok(['start', mdt, '--nid', nid(1)])).toMatch(new RegExp(`^MGS, hafs-MDT0000: already serving on 127\\.0\\.121\\.1@tcp \\(node 127\\.0\\.121\\.1, pid ${pid}\\)`))
    expect(ws.processes()).toEqual([pid])
    expect((await status()).code).toBe(0)
    expect((await status(['--nid', nid(1)])).code).toBe(0)
    const other = await status(['--nid', nid(2)])
    expect(other.code).toBe(7)
    expect(other.stdout).toBe(`MGS+hafs-MDT0000: served on ${nid(1)}, not on ${nid(2)}\n`)
    // stop --nid of another node leaves it served.
    expect(await ws.ok(['stop', mdt, '--nid', nid(2)])).toBe(`MGS+hafs-MDT0000: served on ${nid(1)}, not on ${nid(2)}; nothing to stop\n`)
    expect((await status()).code).toBe(0)
    expect(await ws.ok(['stop', mdt, '--nid', nid(1)])).toBe(`MGS+hafs-MDT0000: stopped cleanly on 127.0.121.1 (${nid(1)})\n`)
    expect(await ws.ok(['stop', mdt])).toMatch(/stopped it cleanly at .*; nothing to stop\n$/)
    expect((await status()).code).toBe(7)
    expect(ws.processes()).toEqual([])
  })

  test('ocf-tester passes on ocf:lproxy:target', async () => {
    const r = await run('ocf-tester', ['-v', '-n', 'mdt0', '-o', `dir=${mdt}`, '-o', `nid=${nid(1)}`, '-o', `port=${PORT}`, AGENT])
    process.stdout.write(`---- ocf-tester ----\n${r.out}${r.err}---- end of ocf-tester ----\n`)
    expect(r.out + r.err).toMatch(/passed all tests/)
    expect(r.code).toBe(0)
    expect(ws.processes()).toEqual([])
  }, 600_000)

  test('the agent: validate-all refuses a wrong port, monitor of a stopped target is 7, meta-data is well-formed', async () => {
    const agent = (action: string, extra: Record<string, string> = {}) => {
      const vars = { OCF_RESKEY_dir: mdt, OCF_RESKEY_nid: nid(1), OCF_RESKEY_port: String(PORT), ...extra }
      return new Promise<number>((resolve) => execFile(AGENT, [action], { env: { ...env, ...vars } }, (e) => resolve(e ? Number(e.code) : 0)))
    }
    expect(await agent('validate-all')).toBe(0)
    expect(await agent('validate-all', { OCF_RESKEY_port: '32999' })).toBe(6)
    expect(await agent('validate-all', { OCF_RESKEY_nid: 'nonsense' })).toBe(6)
    expect(await agent('monitor')).toBe(7)
    expect(await agent('stop')).toBe(0)
    const meta = spawnSync(AGENT, ['meta-data'], { encoding: 'utf8' })
    expect(spawnSync('xmllint', ['--noout', '-'], { input: meta.stdout }).status).toBe(0)
  })
})

describe('fence_lproxy', () => {
  test('metadata: well-formed XML naming every action and the plug', async () => {
    const r = await fence(['-o', 'metadata'])
    expect(r.code).toBe(0)
    const lint = spawnSync('xmllint', ['--noout', '-'], { input: r.out, encoding: 'utf8' })
    expect(lint.stderr).toBe('')
    expect(lint.status).toBe(0)
    for (const a of ['on', 'off', 'reboot', 'status', 'list', 'monitor', 'metadata']) expect(r.out).toContain(`<action name="${a}"`)
    expect(r.out).toMatch(/<parameter name="plug" unique="0" required="1"/)
  })

  test('off kills the node on the NID and keeps it from starting; on lets it start again', async () => {
    await ws.ok(['start', mdt, '--nid', nid(1)])
    const [pid] = ws.processes()
    // Pacemaker's way: key=value on stdin, with keys the agent has no use for.
    expect(await fence([], `action=status\nport=${nid(1)}\nnodename=ha1\n`)).toMatchObject({ code: 0, out: 'Status: ON\n' })
    expect((await fence(['-o', 'list'])).out.split('\n')).toContain(`${nid(1)},`)
    const off = await fence([], `action=off\nplug=${nid(1)}\n`)
    expect(off).toMatchObject({ code: 0, err: '' })
    expect(ws.processes()).not.toContain(pid)
    expect(readFileSync(path.join(ws.dir, 'fence', '127.0.121.1_tcp.off'), 'utf8')).toMatch(/fence_lproxy off/)
    expect((await fence(['--action=status', '--plug', nid(1)])).code).toBe(2)
    const refused = await ws.cli(['start', mdt, '--nid', nid(1)])
    expect(refused.code).toBe(1)
    expect(refused.stderr).toMatch(/node 127\.0\.121\.1@tcp is powered off by its fence agent/)
    expect(ws.processes()).toEqual([])
    // Off again (a retried fencing) is fine; then on.
    expect((await fence(['-o', 'off', '-n', nid(1)])).code).toBe(0)
    expect((await fence(['-o', 'on', '-n', nid(1)])).code).toBe(0)
    expect((await fence(['-o', 'status', '-n', nid(1)])).code).toBe(0)
    // A crashed holder: the takeover start on the same NID goes through MMP.
    await ws.ok(['start', mdt, '--nid', nid(1)])
    expect((await status()).code).toBe(0)
    expect((await fence(['-o', 'reboot', '-n', nid(1)])).code).toBe(0)
    expect((await status()).code).toBe(7)
    expect((await fence(['-o', 'status', '-n', nid(1)])).code).toBe(0)
  })

  test('monitor, help, and bad input: exit 1 with one line', async () => {
    expect((await fence(['-o', 'monitor'])).code).toBe(0)
    expect((await fence(['-h'])).out).toMatch(/-n, --plug=\[plug\]/)
    const bad = await fence(['-o', 'explode', '-n', nid(1)])
    expect(bad.code).toBe(1)
    expect(bad.err).toMatch(/^fence_lproxy: action: Invalid option/)
    expect((await fence(['-o', 'off'])).err).toBe('fence_lproxy: action off needs a plug (-n NID)\n')
    expect((await fence(['-o', 'off', '-n', 'nonsense'])).code).toBe(1)
    expect((await fence(['--bogus'])).err).toBe("fence_lproxy: unknown option '--bogus'\n")
    expect((await fence([], 'action=status\nplug=' + nid(9) + '\nfrobnicate=1\n')).err).toMatch(/Ignoring unknown option 'frobnicate=1'/)
  })

  test('install-agents writes both agents with this lproxy in them', async () => {
    const root = path.join(ws.dir, 'root')
    expect(await ws.ok(['ha', 'install-agents', '--root', root])).toMatch(/installed .*usr\/lib\/ocf\/resource\.d\/lproxy\/target\ninstalled .*usr\/sbin\/fence_lproxy\n/)
    const lp = path.resolve('bin/lproxy.js')
    for (const f of ['usr/lib/ocf/resource.d/lproxy/target', 'usr/sbin/fence_lproxy']) expect(readFileSync(path.join(root, f), 'utf8')).toContain(`LPROXY="\${LPROXY:-${lp}}" # lproxy-path`)
    const meta = spawnSync(path.join(root, 'usr/sbin/fence_lproxy'), ['-o', 'metadata'], { encoding: 'utf8' })
    expect(meta.stdout).toMatch(/^<\?xml/)
  })
})
