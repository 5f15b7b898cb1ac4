import { describe, it, expect, afterAll, vi } from 'vitest'
import { promises as fsp } from 'node:fs'
import path from 'node:path'
import net from 'node:net'
import { ctlRequestSchema } from '../../src/ctl/server.js'
import { callJsonSocket, serveJsonSocket } from '../../src/common/jsonsock.js'
import { ManualClock, realClock } from '../../src/common/clock.js'
import { ServerNode } from '../../src/server/node.js'
import { Journal } from '../../src/server/target/journal.js'
import { readMmp } from '../../src/server/target/mmp.js'
import { createLogger, silentLogger } from '../../src/common/log.js'
import { CHECKPOINT } from '../../src/server/target/ondisk.js'
import { Target } from '../../src/server/target/target.js'
import { MdtBackend } from '../../src/server/mdt/mdt.js'
import { MgsBackend } from '../../src/server/mgs/mgs.js'
import { MDT_NAME, testTunables } from '../helpers/target.js'
import { formatMgsMdt, tempDir, removeTempDirs } from '../helpers/nodes.js'

afterAll(removeTempDirs)

describe('control socket requests', () => {
  it.each([
    [{ cmd: 'status' }, true],
    [{ cmd: 'setstripe', path: '/d', layout: { stripe_count: 1, stripe_size: 1 << 20, stripe_offset: -1 } }, true],
    [{ cmd: 'setstripe', path: '/d', layout: null }, true],
    [{ cmd: 'setstripe', path: 'relative', layout: null }, false],
    [{ cmd: 'setstripe', path: '/d', layout: { stripe_count: 0, stripe_size: 1, stripe_offset: 0 } }, false],
    [{ cmd: 'get_param', patterns: [] }, false],
    [{ cmd: 'get_param', patterns: [7] }, false],
    [{ cmd: 'deactivate', target: 'spfs-OST0001', permanent: 'yes' }, false],
    [{ cmd: 'rm -rf /' }, false],
    [{}, false],
    [[], false],
  ])('%j -> %s', (req, ok) => {
    expect(ctlRequestSchema.safeParse(req).success).toBe(ok)
  })

  it('are answered EINVAL when malformed, before the handler; the socket is 0600 from the start', async () => {
    const file = path.join(await tempDir('lp-sock'), 's.sock')
    const seen: unknown[] = []
    const server = await serveJsonSocket(file, ctlRequestSchema, async (req) => void seen.push(req))
    try {
      expect((await fsp.stat(file)).mode & 0o777).toBe(0o600)
      await expect(callJsonSocket(file, { cmd: 'get_param', patterns: 'x' })).rejects.toMatchObject({ code: 'EINVAL', message: expect.stringMatching(/invalid request: patterns/) })
      await callJsonSocket(file, { cmd: 'dl' })
      expect(seen).toEqual([{ cmd: 'dl' }])
      // A line that never ends is not buffered without bound.
      const closed = await new Promise<boolean>((resolve) => {
        const s = net.createConnection(file, () => s.write('x'.repeat(2 << 20)))
        s.on('error', () => undefined)
        s.on('close', () => resolve(true))
      })
      expect(closed).toBe(true)
    } finally {
      server.close()
    }
  })
})

describe('on-disk JSON', () => {
  it("the MDT's part of CHECKPOINT naming an image outside the target, or a damaged image, stops the start with a clear message", async () => {
    const dir = await tempDir('lp-cp')
    const clock = new ManualClock()
    const open = () =>
      Target.open({ name: MDT_NAME, kind: 'mdt', dir, clock, log: silentLogger, backend: new MdtBackend({ dir: path.join(dir, 'mdtfs'), clock }), replayable: true, tunables: testTunables() })
    const good = { transno: 0, journal_seq: 1, lastrcvd: { clients: [], replies: [] } }
    await fsp.writeFile(path.join(dir, CHECKPOINT), JSON.stringify({ ...good, backend: { snapshot: '../../../etc/passwd' } }))
    await expect(open()).rejects.toThrow(/snapshot/)
    await fsp.mkdir(path.join(dir, 'mdtfs', 'snapshots'), { recursive: true })
    await fsp.writeFile(path.join(dir, 'mdtfs', 'snapshots', 'ns-000000000001.json'), JSON.stringify({ inodes: [{ fid: 0 }], dirs: [], opens: [], llog: [] }))
    await fsp.writeFile(path.join(dir, CHECKPOINT), JSON.stringify({ ...good, backend: { snapshot: 'ns-000000000001.json' } }))
    await expect(open()).rejects.toThrow(/ns-000000000001.json: inodes.0/)
  })
})

describe('a node mounting a damaged target', () => {
  it('fails with the reason, and stops the MGS it had opened beside it: no journal of it stays open', async () => {
    const dir = await tempDir('lp-node')
    await formatMgsMdt({ dir, port: 28990, params: ['mmp_interval=0.1'] })
    await fsp.mkdir(path.join(dir, 'mdt'), { recursive: true })
    await fsp.writeFile(path.join(dir, 'mdt', CHECKPOINT), JSON.stringify({ transno: 0, journal_seq: 1, lastrcvd: { clients: [], replies: [] }, backend: { snapshot: '../../../etc/passwd' } }))
    const node = new ServerNode({ nid: '127.0.89.1@tcp', name: 'mds1', port: 28990, clock: realClock, log: silentLogger, onEmpty: () => undefined })
    await expect(node.mountDir(dir)).rejects.toThrow(/snapshot/)
    const links = await Promise.all((await fsp.readdir('/proc/self/fd')).map((fd) => fsp.readlink(`/proc/self/fd/${fd}`).catch(() => '')))
    expect(links.filter((l) => l.startsWith(dir))).toEqual([])
  })
})

describe('a node unmounting a target whose final commit fails', () => {
  it('says why, and stops it all the same: its journal closed, the MMP block released for the partner', async () => {
    const dir = await tempDir('lp-node')
    await formatMgsMdt({ dir, port: 28991, params: ['mmp_interval=0.1'] })
    const node = new ServerNode({ nid: '127.0.89.2@tcp', name: 'mds1', port: 28991, clock: realClock, log: silentLogger, onEmpty: () => undefined })
    await node.mountDir(dir)
    expect((await readMmp(dir))?.state).toBe('active')
    const full = vi.spyOn(Journal.prototype, 'append').mockRejectedValue(Object.assign(new Error('ENOSPC: no space left on device, write'), { code: 'ENOSPC' }))
    try {
      await expect(node.unmount(dir, true)).rejects.toThrow(/ENOSPC/)
    } finally {
      full.mockRestore()
    }
    expect((await readMmp(dir))?.state).toBe('clean')
    const links = await Promise.all((await fsp.readdir('/proc/self/fd')).map((fd) => fsp.readlink(`/proc/self/fd/${fd}`).catch(() => '')))
    expect(links.filter((l) => l.startsWith(dir))).toEqual([])
  })
})

describe("the MGS's configuration log", () => {
  it('is refused with its file and field when forged (a target with a made-up kind, a NID too long)', async () => {
    const dir = await tempDir('lp-mgs')
    const mgs = new MgsBackend(dir, 'spfs', 988, new ManualClock())
    const file = path.join(dir, 'config.json')
    const target = { name: 'spfs-OST0001', kind: 'ost', index: 1, nids: ['127.0.0.1@tcp'], mode: 'failover', active: true, instance: 1 }
    await fsp.writeFile(file, JSON.stringify({ fsname: 'spfs', port: 988, seq: 1, targets: [target] }))
    await mgs.load()
    await fsp.writeFile(file, JSON.stringify({ fsname: 'spfs', port: 988, seq: 1, targets: [{ ...target, kind: 'root' }] }))
    await expect(mgs.load()).rejects.toThrow(/config.json: targets.0.kind/)
    await fsp.writeFile(file, JSON.stringify({ fsname: 'spfs', port: 988, seq: 1, targets: [{ ...target, nids: ['x'.repeat(200)] }] }))
    await expect(mgs.load()).rejects.toThrow(/targets.0.nids.0/)
  })
})

describe('log files', () => {
  it('are created 0600', async () => {
    const file = path.join(await tempDir('lp-log'), 'node.log')
    const log = createLogger({ name: 't', file })
    log.info('hello')
    // The destination opens the file asynchronously: poll for it, with a deadline.
    for (const end = Date.now() + 5000; Date.now() < end && !(await fsp.stat(file).catch(() => null)); ) await new Promise((r) => setImmediate(r))
    expect((await fsp.stat(file)).mode & 0o777).toBe(0o600)
  })
})
