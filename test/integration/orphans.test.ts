/**
 * No object outlives its file, with real server nodes: the MDT's orphan cleanup (after its
 * recovery, and whenever its OSP reconnects to an OST) and `lproxy lfsck`. This file owns
 * loopback 127.0.82.x and ports 28200-28299.
 */
import { describe, it, expect, afterAll, vi } from 'vitest'
import { execFile } from 'node:child_process'
import path from 'node:path'
import { realClock } from '../../src/common/clock.js'
import { silentLogger } from '../../src/common/log.js'
import { PtlrpcClient } from '../../src/ptlrpc/client.js'
import { Import } from '../../src/ptlrpc/import.js'
import type { MdtAttr, ObjAttr } from '../../src/protocol/ops.js'
import type { LfsckReport } from '../../src/server/mdt/mdt.js'
import { NodeSet, REPO, formatMgsMdt, formatOst, type NodeProc } from '../helpers/nodes.js'

const PORT = 28200
const MDS = '127.0.82.1@tcp'
const OSS = '127.0.82.2@tcp'
const OST = 'spfs-OST0001'
const MDT = 'spfs-MDT0000'
const PARAMS = ['commit_interval=0.2', 'mmp_interval=0.1', 'sys.timeout=5']
const LAYOUT = { stripe_size: 1 << 20, osts: [1] }

const nodes = new NodeSet()
afterAll(() => nodes.cleanup(), 30_000)

function client() {
  const c = new PtlrpcClient(realClock, silentLogger, PORT)
  c.tunables.timeout = 5
  const ost = new Import({ client: c, target: OST, name: `${OST}-osc`, nids: [OSS], log: silentLogger })
  const mdt = new Import({ client: c, target: MDT, name: `${MDT}-mdc`, nids: [MDS], log: silentLogger })
  const open = async () => {
    ost.connect()
    mdt.connect()
    await Promise.all([ost.whenFull(), mdt.whenFull()])
  }
  const close = async () => {
    await Promise.all([ost.close(), mdt.close()])
    await c.close()
  }
  const create = async (name: string) =>
    (await mdt.request<{ attr: MdtAttr }>('mdt_create', { parent: 1, name, type: 'reg', mode: 0o644, uid: 0, gid: 0, time: Date.now(), layout: LAYOUT })).body.attr.fid
  const write = (fid: number, data: Buffer) => ost.request('ost_write', { fid, stripe: 0, offset: 0 }, { bulk: data })
  const attr = async (fid: number) => (await ost.request<{ attrs: (ObjAttr | null)[] }>('ost_getattr', { objects: [{ fid, stripe: 0 }] })).body.attrs[0]
  return { ost, mdt, open, close, create, write, attr }
}

/** `lproxy lfsck ...` as an admin runs it: exit code, stdout, stderr. */
function lfsck(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, [path.join(REPO, 'dist/cli/main.js'), 'lfsck', ...args], { env: process.env, timeout: 60_000 }, (err, stdout, stderr) =>
      resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stdout, stderr }),
    )
  })
}

async function lfsckJson(mdsDir: string, fix = false): Promise<LfsckReport & { target: string }> {
  const r = await lfsck([mdsDir, '--json', ...(fix ? ['--fix'] : [])])
  expect(r.stderr).toBe('')
  expect(r.code).toBe(0)
  return JSON.parse(r.stdout) as LfsckReport & { target: string }
}

async function recovering(n: NodeProc): Promise<boolean> {
  const s = await n.admin<{ mounts: Array<{ targets: Array<{ kind: string; recovering: boolean }> }> }>({ cmd: 'status' })
  return s.mounts.flatMap((m) => m.targets).some((t) => t.kind !== 'mgs' && t.recovering)
}

describe('orphan objects', () => {
  it('a file whose create was lost with the MDS leaves no object; lfsck counts and fixes orphans, reports dangling stripes', async () => {
    const root = await nodes.tempDir('lp-orphans')
    const mdsDir = path.join(root, 'mdt0')
    const ossDir = path.join(root, 'ost1')
    await formatMgsMdt({ dir: mdsDir, port: PORT, params: PARAMS })
    await formatOst({ dir: ossDir, index: 1, mgsnode: MDS, port: PORT, params: PARAMS })
    let [mds, oss] = await Promise.all([nodes.start({ nid: MDS, port: PORT, dir: mdsDir }), nodes.start({ nid: OSS, port: PORT, dir: ossDir })])
    // The OST registered: the MDT takes layouts on it.
    await nodes.ospConnected(oss)

    // A file that lives, committed on both targets.
    const cl = client()
    await cl.open()
    const keep = await cl.create('keep')
    await cl.write(keep, Buffer.from('kept bytes'))
    // (Made before the lost create: a FID given after it would be the lost one's again until the MDT's FID ranges.)
    const victim = await cl.create('victim')
    const gone = await cl.create('gone')
    await cl.write(gone, Buffer.from('x'))
    await Promise.all([cl.mdt.request('sync', {}), cl.ost.request('sync', {})])

    // A create the MDS loses (replay barrier, then a crash) while the OST commits the write.
    await mds.admin({ cmd: 'barrier', dir: mdsDir })
    const lost = await cl.create('lost')
    const w = await cl.write(lost, Buffer.alloc(1 << 20, 7))
    await cl.ost.request('sync', {})
    expect(cl.ost.peerCommitted).toBeGreaterThanOrEqual(w.transno)
    await mds.kill9()
    // The client dies with it: nobody will replay the create.
    await cl.close()
    mds = await nodes.start({ nid: MDS, port: PORT, dir: mdsDir })
    expect(await recovering(mds)).toBe(true)
    await mds.admin({ cmd: 'abort_recovery', dir: mdsDir })

    // Recovery over, the OSP connected: the lost file's object goes, the live one stays.
    const cl2 = client()
    await cl2.open()
    await vi.waitFor(async () => expect(await cl2.attr(lost)).toBeNull(), { timeout: 20_000, interval: 100 })
    expect(await cl2.attr(keep)).toMatchObject({ size: 10 })
    // It stays gone: a late write of the dead client is refused, not a resurrection.
    await expect(cl2.write(lost, Buffer.from('late'))).rejects.toMatchObject({ code: 'ENOENT' })
    expect(await cl2.attr(lost)).toBeNull()
    let r = await lfsckJson(mdsDir)
    expect(r.target).toBe(MDT)
    expect(r).toMatchObject({ files: 3, pending_destroys: 0, fixed: false })
    expect(r.osts).toEqual([{ ost: 1, objects: 2, orphans: 0, orphan_bytes: 0, removed: 0, dangling: [] }])

    // Plant an orphan (an object no file names) and a dangling stripe (a live file's object destroyed behind the MDT's back).
    const planted = 900_001
    await cl2.write(planted, Buffer.alloc(5000, 1))
    await cl2.write(victim, Buffer.from('soon gone'))
    await cl2.ost.request('ost_destroy', { fids: [victim] })
    const text = await lfsck([mdsDir])
    expect(text.code).toBe(0)
    expect(text.stdout).toContain('OST0001: 3 object(s), 1 orphan(s) (5000 bytes), 1 dangling')
    expect(text.stdout).toContain(`dangling: FID ${victim} stripe 0: the OST destroyed its object`)
    expect(text.stdout).toContain('total: 1 orphan object(s), 1 dangling stripe(s) (--fix destroys the orphans)')
    r = await lfsckJson(mdsDir, true)
    expect(r.osts[0]).toMatchObject({ orphans: 1, orphan_bytes: 5000, removed: 1, dangling: [{ fid: victim, stripe: 0 }] })
    expect(await cl2.attr(planted)).toBeNull()
    expect(await cl2.attr(keep)).toMatchObject({ size: 10 })
    r = await lfsckJson(mdsDir)
    expect(r.osts[0]).toMatchObject({ objects: 2, orphans: 0, removed: 0 })

    // An orphan made while the OSP is connected goes when it reconnects (here: the OSS restarted).
    const again = 900_002
    await cl2.write(again, Buffer.from('orphan'))
    await cl2.ost.request('sync', {})
    await cl2.close()
    await oss.kill9()
    oss = await nodes.start({ nid: OSS, port: PORT, dir: ossDir })
    await oss.admin({ cmd: 'abort_recovery', dir: ossDir })
    const cl3 = client()
    await cl3.open()
    await vi.waitFor(async () => expect(await cl3.attr(again)).toBeNull(), { timeout: 30_000, interval: 200 })
    expect(await cl3.attr(keep)).toMatchObject({ size: 10 })

    // A removed file's llog record stays until the OST has COMMITTED the destroy.
    await oss.admin({ cmd: 'barrier', dir: ossDir })
    await cl3.mdt.request('mdt_unlink', { parent: 1, name: 'gone', dir: false, time: Date.now() })
    await cl3.mdt.request('sync', {})
    // The OST executes it (the object is gone) but commits nothing past its barrier...
    await vi.waitFor(async () => expect(await cl3.attr(gone)).toBeNull(), { timeout: 10_000, interval: 50 })
    // ...so, its reply long in (nothing can tell "not cancelled" but time), the record stays.
    await realClock.sleep(1000)
    expect((await lfsckJson(mdsDir)).pending_destroys).toBe(1)
    // The OSS crashes: the destroy is lost with its uncommitted tail, and sent again from the llog.
    await cl3.close()
    await oss.kill9()
    oss = await nodes.start({ nid: OSS, port: PORT, dir: ossDir })
    await oss.admin({ cmd: 'abort_recovery', dir: ossDir })
    await vi.waitFor(async () => expect((await lfsckJson(mdsDir)).pending_destroys).toBe(0), { timeout: 30_000, interval: 250 })
    const cl4 = client()
    await cl4.open()
    expect(await cl4.attr(gone)).toBeNull()
    expect(await cl4.attr(keep)).toMatchObject({ size: 10 })
    await expect(cl4.write(gone, Buffer.from('late'))).rejects.toMatchObject({ code: 'ENOENT' })
    await cl4.close()
    expect(nodes.running.length).toBe(2)
  }, 120_000)

  it('lfsck: bad input is one clear line and a non-zero exit', async () => {
    const none = await lfsck([])
    expect(none.code).toBe(2)
    expect(none.stderr).toBe('lproxy: lfsck: give either an MDT target directory or --mount <mountpoint>\n')
    const missing = await lfsck(['/nonexistent/mdt0'])
    expect(missing.code).toBe(2)
    expect(missing.stderr).toMatch(/^lproxy: lfsck: \/nonexistent\/mdt0 does not exist/)
    const ossDir = path.join(path.dirname(nodes.running[0]!.dir), 'ost1')
    const ost = await lfsck([ossDir])
    expect(ost.code).toBe(1)
    expect(ost.stderr).toBe(`lproxy: lfsck: ${OST} is not an MDT: lfsck runs on the MDT\n`)
  })
})
