import { existsSync, mkdirSync } from 'node:fs'
import path from 'node:path'
import { beforeAll, describe, expect, test } from 'vitest'
import { startCluster, workspace, type Workspace } from '../helpers/cluster.js'

/**
 * The admin CLI and the local cluster, through the real `lproxy` binary and real node
 * processes. This file owns loopback 127.0.30.x and ports 23000-23999.
 */
const NET = '127.0.30'
const PORT = 23000
const nid = (host: number) => `${NET}.${host}@tcp`
const FAST = ['--param', 'mmp_interval=0.1', '--param', 'commit_interval=0.5', '--param', 'sys.timeout=5']

describe('lproxy admin commands', () => {
  let ws: Workspace
  const mdt = () => path.join(ws.dir, 'mdt0')
  const ost = () => path.join(ws.dir, 'ost1')
  const log = (name: string) => ['--name', name, '--log', path.join(ws.dir, `${name}.log`)]

  beforeAll(() => {
    ws = workspace('lproxy-cli-')
  })

  test('format refuses an existing target and names it; --reformat erases it', async () => {
    const args = ['format', '--fsname', 'spfs', '--mgs', '--mdt', '--failnode', nid(2), '--port', String(PORT), ...FAST, mdt()]
    const first = await ws.cli(args)
    expect(first.code).toBe(0)
    expect(first.stdout).toMatch(/Target: +MGS\+spfs-MDT0000/)
    const again = await ws.cli(args)
    expect(again.code).not.toBe(0)
    expect(again.stderr).toBe(`lproxy: ${mdt()} already holds target MGS+spfs-MDT0000; use --reformat to erase it\n`)
    expect((await ws.cli([...args, '--reformat'])).code).toBe(0)
    await ws.ok(['format', '--fsname', 'spfs', '--ost', '--index', '1', '--mgsnode', `${nid(1)}:${nid(2)}`, '--failnode', nid(12), '--port', String(PORT), ...FAST, ost()])
  })

  test('bad --mgsnode, bad NIDs and bad numbers: one clear line, non-zero exit, nothing left running', async () => {
    const bad = [
      [['format', '--fsname', 'spfs', '--ost', '--index', '2', '--mgsnode', `${nid(1)}:mds2@ib0`, path.join(ws.dir, 'ost2')], /network 'ib0' is not supported/],
      [['format', '--fsname', 'spfs', '--ost', '--index', 'two', '--mgsnode', nid(1), path.join(ws.dir, 'ost2')], /'--index <n>' argument 'two' is invalid\. an integer from 0 to 65535/],
      [['start', mdt(), '--nid', '127.0.30.300@tcp'], /invalid NID '127\.0\.30\.300@tcp'/],
      [['start', mdt(), '--nid', 'nonsense'], /invalid NID 'nonsense'/],
      [['start', mdt()], /--nid is required/],
      // A well-formed NID that is not an address of this machine: the node cannot listen.
      [['start', ost(), '--nid', '10.255.255.1@tcp', ...log('far')], /cannot listen on 10\.255\.255\.1:23000/],
    ] as const
    for (const [args, msg] of bad) {
      const r = await ws.cli([...args])
      expect(r.code, args.join(' ')).not.toBe(0)
      expect(r.stderr).toMatch(/^lproxy: [^\n]+\n$/)
      expect(r.stderr).toMatch(msg)
    }
    expect(existsSync(path.join(ws.dir, 'ost2'))).toBe(false)
    expect(ws.processes()).toEqual([])
  })

  test('start on a missing or unformatted directory; stop of a directory nobody serves', async () => {
    const empty = path.join(ws.dir, 'empty')
    mkdirSync(empty)
    for (const dir of [path.join(ws.dir, 'missing'), empty]) {
      const r = await ws.cli(['start', dir, '--nid', nid(1), ...log('mds1')])
      expect(r.code).toBe(1)
      expect(r.stderr).toMatch(/does not hold an lproxy target \(no CONFIG\); run 'lproxy format' first/)
    }
    // Stop is safe to repeat (an HA manager does): not served is success, saying why.
    expect(await ws.ok(['stop', mdt()])).toBe(`MGS+spfs-MDT0000 in ${mdt()} is not served: it was never started; nothing to stop\n`)
    expect(ws.processes()).toEqual([])
  })

  test('a target served by a live node is refused elsewhere by MMP, naming the holder', async () => {
    expect(await ws.ok(['start', mdt(), '--nid', nid(1), ...log('mds1')])).toMatch(/^MGS, spfs-MDT0000: serving on 127\.0\.30\.1@tcp \(node mds1, pid \d+\)\n$/)
    const [holder] = ws.processes()
    const r = await ws.cli(['start', mdt(), '--nid', nid(2), ...log('mds2')])
    expect(r.code).toBe(1)
    expect(r.stderr).toMatch(new RegExp(`^lproxy: target ${mdt()} is in use by node mds1 \\(127\\.0\\.30\\.1@tcp, pid ${holder}\\)`))
    // The refused node is gone; the holder still serves.
    expect(ws.processes()).toEqual([holder])
    await ws.ok(['start', ost(), '--nid', nid(11), ...log('oss1')])
  })

  test('recovery-status by directory and by target name through the MGS', async () => {
    const byDir = await ws.ok(['recovery-status', mdt()])
    expect(byDir.split('\n').slice(0, 2)).toEqual(['mdt.spfs-MDT0000.recovery_status=', 'status: INACTIVE'])
    for (const field of ['connected_clients', 'req_replay_clients', 'completed_clients', 'evicted_clients', 'replayed_requests', 'queued_requests', 'next_transno', 'last_transno', 'IR'])
      expect(byDir).toMatch(new RegExp(`^${field}: \\S+$`, 'm'))
    const mgs = ['--mgsnode', `${nid(1)}:${nid(2)}`, '--port', String(PORT)]
    const json = JSON.parse(await ws.ok(['recovery-status', 'ost1', ...mgs, '--json'])) as Record<string, unknown>
    expect(json).toMatchObject({ target: 'spfs-OST0001', status: 'INACTIVE', IR: 'ENABLED' })
    const noMgs = await ws.cli(['recovery-status', 'ost2'])
    expect(noMgs.code).toBe(2)
    expect(noMgs.stderr).toMatch(/needs --mgsnode/)
    const unknown = await ws.cli(['recovery-status', 'ost7', ...mgs])
    expect(unknown.stderr).toMatch(/no target spfs-OST0007 is registered with the MGS/)
    expect(await ws.ok(['barrier', ost()])).toMatch(/^spfs-OST0001: replay barrier set at last_committed \d+/)
    expect(await ws.ok(['abort-recovery', 'spfs-OST0001', ...mgs])).toBe('spfs-OST0001: not in recovery, nothing to abort\n')
    expect((await ws.cli(['evict', ost(), 'no-such-client'])).stderr).toBe('lproxy: spfs-OST0001 has no client no-such-client\n')
  })

  test('stop: clean unmount, and the node exits with its last target', async () => {
    expect(await ws.ok(['stop', ost()])).toBe(`spfs-OST0001: stopped cleanly on oss1 (${nid(11)})\n`)
    expect(await ws.ok(['stop', mdt()])).toBe(`MGS+spfs-MDT0000: stopped cleanly on mds1 (${nid(1)})\n`)
    expect(ws.processes()).toEqual([])
    expect(await ws.ok(['stop', ost()])).toMatch(/is not served: node oss1 \(127\.0\.30\.11@tcp, pid \d+\) stopped it cleanly at .*; nothing to stop\n$/)
  })
})

describe('lproxy cluster', () => {
  test('up --no-mount, status, fail oss1 (ost1 moves to oss2), failback, down leaves nothing', async () => {
    const c = await startCluster({ net: NET, port: PORT + 1, mount: false, timeout: 5, commitInterval: 0.5, mmpInterval: 0.1 })
    expect(c.nids).toEqual({ mds1: nid(1), mds2: nid(2), oss1: nid(11), oss2: nid(12) })

    const again = await c.ws.cli(['cluster', 'up', '--dir', c.dir, '--no-mount'])
    expect(again.code).toBe(1)
    expect(again.stderr).toMatch(/is already up: mds1 \(127\.0\.30\.1@tcp, pid \d+\) serving MGS, spfs-MDT0000; oss1/)

    const st = await c.status()
    expect(st.nodes.map((n) => [n.name, n.state])).toEqual([['mds1', 'up'], ['mds2', 'down'], ['oss1', 'up'], ['oss2', 'up']])
    expect(st.targets.map((t) => [t.name, t.state, t.node])).toEqual([['mdt0', 'serving', 'mds1'], ['ost1', 'serving', 'oss1'], ['ost2', 'serving', 'oss2']])
    expect(st.mount).toMatchObject({ mounted: false, pid: null, enabled: false })
    const oss1 = st.nodes.find((n) => n.name === 'oss1')!.pid!

    const failed = await c.fail('oss1')
    expect(failed).toMatchObject({ node: 'oss1', pid: oss1 })
    expect(failed.moved.map((m) => [m.target, m.node])).toEqual([['ost1', 'oss2']])
    expect(failed.moved[0]!.ms).toBeGreaterThanOrEqual(1000) // the dead time
    const after = await c.status()
    expect(after.nodes.find((n) => n.name === 'oss1')!.state).toBe('down')
    expect(after.targets.find((t) => t.name === 'ost1')).toMatchObject({ state: 'serving', node: 'oss2' })
    expect(c.ws.processes()).not.toContain(oss1)

    const back = await c.failback('oss1')
    expect(back.moved.map((m) => [m.target, m.node])).toEqual([['ost1', 'oss1']])
    expect(back.timeline[0]!.event).toBe('ost1 stopped cleanly on oss2')
    const home = await c.status()
    expect(home.targets.map((t) => t.node)).toEqual(['mds1', 'oss1', 'oss2'])

    await c.down()
    expect(c.ws.processes()).toEqual([])
    const down = await c.status()
    expect(down.nodes.every((n) => n.state === 'down' && n.pid === null)).toBe(true)
    expect(down.targets.every((t) => t.state === 'stopped')).toBe(true)
  })
})
