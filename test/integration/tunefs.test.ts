/**
 * tunefs as tunefs.lustre (issue 18): a target's failover NID changed on a stopped OST with
 * --erase-params --writeconf, the OST restarted, a client's connection list following the
 * MGS's configuration without a remount, then a crash and a takeover on the new NID with the
 * client (imperative recovery off: only its connection list can lead it there) replaying its
 * uncommitted writes. This file owns loopback 127.0.114.0/24 and port 31600.
 */
import { execFile } from 'node:child_process'
import path from 'node:path'
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest'
import { withMgs } from '../../src/mgc/oneshot.js'
import { nidList } from '../../src/protocol/nid.js'
import { readConfig } from '../../src/server/target/config.js'
import { REPO } from '../helpers/nodes.js'
import { TARGET_NAMES, Tier } from '../helpers/tier.js'

const NET = '127.0.114'
const PORT = 31600
const NEW = `${NET}.13@tcp`
const PARAMS = ['sys.timeout=4', 'commit_interval=0.2', 'mmp_interval=0.2']

let t: Tier
beforeAll(async () => {
  t = await Tier.up({ net: NET, port: PORT })
}, 60_000)
afterAll(() => t?.down(), 30_000)

function lproxy(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) =>
    execFile(process.execPath, [path.join(REPO, 'bin', 'lproxy.js'), ...args], (err, stdout, stderr) =>
      resolve({ code: err ? (typeof err.code === 'number' ? err.code : 128) : 0, stdout, stderr }),
    ),
  )
}

async function mgsNids(target: string): Promise<string[] | undefined> {
  const cfg = await withMgs(nidList(t.mgsnode), PORT, (m) => m.config())
  return cfg.targets.find((x) => x.name === target)?.nids
}

describe('lproxy tunefs', () => {
  it('moves an OST\'s failover NID; the client follows without a remount and rides a takeover onto the new NID', async () => {
    const dir = t.dir('ost1')
    const a = await t.client('a', { ir: false })
    const imp = a.fs.imports().find((i) => i.target === TARGET_NAMES.ost1)!
    expect(imp.conns.map((c) => c.nid)).toEqual([t.nid('oss1'), t.nid('oss2')])
    await a.mkdir('/d')
    await a.write('/d/f', Buffer.alloc(300_000, 1))

    // Served: refused, in one line naming the holder, and CONFIG untouched.
    const busy = await lproxy(['tunefs', dir, '--failnode', NEW])
    expect(busy.code).toBe(1)
    expect(busy.stderr).toMatch(/^lproxy: .*ost1 is being served; stop it first \(.*in use by node .*\)\n$/)
    expect((await readConfig(dir)).failnodes).toEqual([t.nid('oss2')])

    await t.node('ost1').stop()
    const r = await lproxy(['tunefs', dir, '--erase-params', '--mgsnode', t.mgsnode, '--failnode', NEW, ...PARAMS.flatMap((p) => ['--param', p]), '--writeconf'])
    expect(r.stderr).toBe('')
    expect(r.stdout).toMatch(new RegExp(`^Failnodes: +${t.nid('oss2')} -> ${NEW}$`, 'm'))
    expect(r.stdout).toMatch(/^Writeconf: +the next start regenerates/m)
    expect(await readConfig(dir)).toMatchObject({ failnodes: [NEW], writeconf: true, mgsnode: t.mgsnode })

    // The restart registers with writeconf: the MGS replaces the NIDs, clients follow, the mark is cleared.
    await t.start('ost1', 'oss1')
    await vi.waitFor(async () => expect(await mgsNids(TARGET_NAMES.ost1)).toEqual([t.nid('oss1'), NEW]), { timeout: 15_000, interval: 100 })
    await vi.waitFor(() => expect(imp.conns.map((c) => c.nid)).toEqual([t.nid('oss1'), NEW]), { timeout: 15_000, interval: 50 })
    await vi.waitFor(async () => expect((await readConfig(dir)).writeconf).toBeUndefined(), { timeout: 10_000, interval: 50 })

    // Uncommitted writes (barrier), then the node dies and the target comes up on the new NID.
    await vi.waitFor(() => expect(imp.state).toBe('FULL'), { timeout: 20_000, interval: 50 })
    await t.barrier('ost1')
    const data = Buffer.alloc(200_000, 7)
    await a.pwrite('/d/f', data, 50_000)
    await t.crash('ost1')
    const taken = await t.nodes.start({ nid: NEW, port: PORT, dir, log: path.join(t.root, 'logs', 'oss3.log') })
    await vi.waitFor(() => expect(imp.currentNid).toBe(NEW), { timeout: 30_000, interval: 50 })
    const want = Buffer.alloc(300_000, 1)
    data.copy(want, 50_000)
    expect((await a.read('/d/f')).equals(want)).toBe(true)
    const st = await taken.admin<{ replayed_requests?: number; status: string }>({ cmd: 'recovery_status', target: TARGET_NAMES.ost1 })
    expect(st.status).toMatch(/COMPLETE|RECOVERING/)
    expect(a.evictions()).toEqual([])
    expect(await t.fresh((c) => c.read('/d/f'))).toEqual(want)
  }, 90_000)
})
