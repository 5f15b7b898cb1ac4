/**
 * Crash consistency on a real filesystem: an ext4 image, loop-mounted (not tmpfs), holds the
 * targets; a real node writes committed data through the real RPC path, then the disk is
 * damaged the way real disks are:
 *   (a) a journal record in the middle of its file is corrupted: the start is refused, naming
 *       the file and byte offset; `lproxy start --discard-corrupt-journal` starts from the
 *       last good record and logs what it dropped;
 *   (b) CHECKPOINT is truncated: the start falls back to the previous generation and its
 *       journal, and every committed transaction is still there, byte for byte.
 * The image is unmounted and its loop device detached in cleanup, always. Needs root.
 * This file owns loopback 127.0.84.10-19 and port 28410.
 */
import { describe, it, expect, beforeAll, afterAll } from 'vitest'
import { execFileSync } from 'node:child_process'
import { mkdtempSync, promises as fsp } from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { realClock } from '../../src/common/clock.js'
import { silentLogger } from '../../src/common/log.js'
import { PtlrpcClient } from '../../src/ptlrpc/client.js'
import { Import } from '../../src/ptlrpc/import.js'
import { workspace, type Workspace } from '../helpers/cluster.js'

const PORT = 28410
const OSS = '127.0.84.10@tcp'
const MGS = '127.0.84.19@tcp'
const OST = 'spfs-OST0001'
const FAST = ['--param', 'commit_interval=0.2', '--param', 'mmp_interval=0.1', '--param', 'sys.timeout=5']

const sbin = (cmd: string) => ['/usr/sbin', '/sbin', '/usr/bin', '/bin'].map((d) => path.join(d, cmd)).find((p) => execOk('test', ['-x', p])) ?? cmd
function execOk(cmd: string, args: string[]): boolean {
  try {
    execFileSync(cmd, args, { stdio: 'ignore' })
    return true
  } catch {
    return false
  }
}

let ws: Workspace
let imgDir: string
let img: string
let mnt: string
/** Node processes started here, killed by PID in cleanup. */
const pids = new Set<number>()

beforeAll(() => {
  ws = workspace('lproxy-h4-ext4-')
  imgDir = mkdtempSync(path.join(os.tmpdir(), 'lp-ext4img-'))
  img = path.join(imgDir, 'luns.img')
  mnt = path.join(imgDir, 'mnt')
  execFileSync('truncate', ['-s', '256M', img])
  execFileSync(sbin('mkfs.ext4'), ['-q', '-F', img])
  execFileSync('mkdir', [mnt])
  execFileSync('mount', ['-o', 'loop', img, mnt])
})

afterAll(async () => {
  for (const pid of pids) {
    try {
      process.kill(pid, 'SIGKILL')
    } catch {
      // already gone
    }
  }
  // A killed process may hold files on the image for a moment: unmount once nothing does.
  for (let i = 0; i < 50 && !execOk('umount', [mnt]); i++) {
    if (!execOk('mountpoint', ['-q', mnt])) break
    await realClock.sleep(100)
  }
  if (execOk('mountpoint', ['-q', mnt])) execOk('umount', ['-l', mnt])
  const loops = execFileSync(sbin('losetup'), ['-j', img], { encoding: 'utf8' })
  for (const l of loops.split('\n').filter(Boolean)) execOk(sbin('losetup'), ['-d', l.slice(0, l.indexOf(':'))])
  await fsp.rm(imgDir, { recursive: true, force: true })
}, 30_000)

async function start(dir: string, extra: string[] = []): Promise<{ code: number; stdout: string; stderr: string }> {
  const r = await ws.cli(['start', dir, '--nid', OSS, '--name', 'oss1', '--log', path.join(ws.dir, 'oss1.log'), ...extra])
  const m = /pid (\d+)\)/.exec(r.stdout)
  if (m) pids.add(Number(m[1]))
  return r
}

async function stop(dir: string): Promise<void> {
  await ws.ok(['stop', dir])
}

async function logLines(): Promise<Array<{ level: number; msg: string }>> {
  return (await fsp.readFile(path.join(ws.dir, 'oss1.log'), 'utf8'))
    .split('\n')
    .filter(Boolean)
    .map((l) => JSON.parse(l) as { level: number; msg: string })
}

async function client() {
  const c = new PtlrpcClient(realClock, silentLogger, PORT)
  c.tunables.timeout = 5
  const imp = new Import({ client: c, target: OST, name: `${OST}-osc`, nids: [OSS], log: silentLogger })
  imp.connect()
  await imp.whenFull()
  return {
    imp,
    write: async (fid: number, offset: number, data: Buffer) => (await imp.request('ost_write', { fid, stripe: 0, offset }, { bulk: data })).transno,
    read: async (fid: number, length: number) => Buffer.concat((await imp.request('ost_read', { fid, stripe: 0, offset: 0, length })).bulk),
    /** A clean disconnect (the target forgets this client durably), then the client goes. */
    close: async () => {
      await imp.close()
      await c.close()
    },
  }
}

/** Start offsets of the records of a journal file. */
async function recordOffsets(file: string): Promise<number[]> {
  const buf = await fsp.readFile(file)
  const out: number[] = []
  for (let off = 0; off + 12 <= buf.length; off += 12 + buf.readUInt32BE(off + 4)) out.push(off)
  return out
}

describe('crash consistency on a loop-mounted ext4 image', () => {
  it('the targets really live on ext4', () => {
    expect(execFileSync('findmnt', ['-n', '-o', 'FSTYPE', mnt], { encoding: 'utf8' }).trim()).toBe('ext4')
  })

  it('(a) a journal record corrupted mid-file: start refused naming file and offset; --discard-corrupt-journal starts and logs what it dropped', async () => {
    const dir = path.join(mnt, 'ost1')
    await ws.ok(['format', '--fsname', 'spfs', '--ost', '--index', '1', '--mgsnode', MGS, '--port', String(PORT), ...FAST, dir])
    expect((await start(dir)).code).toBe(0)
    const c = await client()
    const transnos: number[] = []
    for (let i = 0; i < 6; i++) {
      transnos.push(await c.write(1, i * 4096, Buffer.alloc(4096, 65 + i)))
      await c.imp.request('sync', {})
    }
    expect(transnos).toEqual([1, 2, 3, 4, 5, 6])
    await c.close()
    await stop(dir)

    // Records: the client's connect, the six writes (one per sync), its disconnect. Hit the third write.
    const file = path.join(dir, 'ost', 'journal', '00000001.jnl')
    const offsets = await recordOffsets(file)
    expect(offsets).toHaveLength(8)
    const at = offsets[3]!
    const bytes = await fsp.readFile(file)
    bytes[at + 100] ^= 0x08
    await fsp.writeFile(file, bytes)
    execFileSync('sync')

    const refused = await start(dir)
    expect(refused.code).not.toBe(0)
    expect(refused.stderr).toContain(`journal damaged before its tail: ${file} at byte ${at} (CRC mismatch)`)
    expect(refused.stderr).toContain('valid records (transnos 4-6) follow it')
    expect(refused.stderr).toContain('--discard-corrupt-journal')
    // The refusal changed nothing.
    expect(Buffer.compare(await fsp.readFile(file), bytes)).toBe(0)

    const help = await ws.cli(['start', '--help'])
    expect(help.stdout).toMatch(/--discard-corrupt-journal +start even though the journal is damaged/)

    const started = await start(dir, ['--discard-corrupt-journal'])
    expect(started.code, started.stderr).toBe(0)
    const dropped = (await logLines()).find((l) => /--discard-corrupt-journal: journal damaged at/.test(l.msg))
    expect(dropped?.level).toBe(50)
    expect(dropped!.msg).toContain(`${file} at byte ${at} (CRC mismatch); starting from transno 2`)
    expect(dropped!.msg).toContain(`4 valid records (transnos 4-6) follow it in 00000001.jnl bytes ${at}-${bytes.length}`)
    expect(dropped!.msg).toMatch(/copies kept as 00000001\.jnl\.corrupt-\d+/)
    // The disconnect was dropped too: the old client is waited for; an admin ends that.
    await ws.ok(['abort-recovery', dir])
    const c2 = await client()
    expect(c2.imp.peerCommitted).toBe(2)
    expect((await c2.read(1, 8192)).equals(Buffer.concat([Buffer.alloc(4096, 65), Buffer.alloc(4096, 66)]))).toBe(true)
    expect(await c2.write(2, 0, Buffer.from('after the damage'))).toBe(3)
    await c2.close()
    await stop(dir)
    // Clean from now on: a plain start works.
    expect((await start(dir)).code).toBe(0)
    await stop(dir)
  }, 90_000)

  it('(b) CHECKPOINT truncated: falls back to the previous generation, every committed transaction still there', async () => {
    const dir = path.join(mnt, 'ost2')
    await ws.ok(['format', '--fsname', 'spfs', '--ost', '--index', '1', '--mgsnode', MGS, '--port', String(PORT), ...FAST, '--param', 'journal_checkpoint_mb=0.02', dir])
    expect((await start(dir)).code).toBe(0)
    const c = await client()
    const expected = new Map<number, Buffer>()
    let last = 0
    for (let i = 0; i < 30; i++) {
      const fid = 1 + (i % 4)
      const data = Buffer.alloc(3000 + i * 7, 33 + i)
      const cur = expected.get(fid) ?? Buffer.alloc(0)
      const off = Math.floor(i / 4) * 2000
      const next = Buffer.alloc(Math.max(cur.length, off + data.length))
      cur.copy(next)
      data.copy(next, off)
      expected.set(fid, next)
      last = await c.write(fid, off, data)
      await c.imp.request('sync', {})
    }
    await c.close()
    await stop(dir)
    const tdir = path.join(dir, 'ost')
    const names = await fsp.readdir(tdir)
    expect(names).toContain('CHECKPOINT')
    expect(names).toContain('CHECKPOINT.prev')
    const cp = path.join(tdir, 'CHECKPOINT')
    await fsp.truncate(cp, (await fsp.stat(cp)).size >> 1)
    execFileSync('sync')

    const started = await start(dir)
    expect(started.code, started.stderr).toBe(0)
    const fallback = (await logLines()).find((l) => /falling back to the previous checkpoint generation/.test(l.msg))
    expect(fallback?.level).toBe(50)
    expect(fallback!.msg).toContain(`${cp}: `)
    expect(fallback!.msg).toContain('(truncated?)')
    const c2 = await client()
    expect(c2.imp.peerCommitted).toBe(last)
    for (const [fid, buf] of expected) expect((await c2.read(fid, buf.length + 100)).equals(buf), `fid ${fid}`).toBe(true)
    await c2.close()
    await stop(dir)
  }, 90_000)
})
