/**
 * A server node SIGSTOPped with work in flight, its partner taking the target over (the MMP
 * wait), then the first node SIGCONTed: every timer of the resumed node is overdue, yet it
 * must write nothing to the target directory (journal, objects, CHECKPOINT, anything), and
 * stop the target with a console line naming the node that holds it now.
 * This file owns loopback 127.0.84.1-9 and port 28400.
 */
import { describe, it, expect, afterAll } from 'vitest'
import { promises as fsp } from 'node:fs'
import path from 'node:path'
import { realClock } from '../../src/common/clock.js'
import { silentLogger } from '../../src/common/log.js'
import { PtlrpcClient } from '../../src/ptlrpc/client.js'
import { Import } from '../../src/ptlrpc/import.js'
import { NodeSet, formatOst } from '../helpers/nodes.js'

const PORT = 28400
const A = '127.0.84.1@tcp'
const B = '127.0.84.2@tcp'
const MGS = '127.0.84.9@tcp'
const OST = 'spfs-OST0001'
const COMMIT_S = 1.5
// Recovery on the partner waits for the (stopped) client long past the test: nothing of its own is written meanwhile.
const PARAMS = [`commit_interval=${COMMIT_S}`, 'mmp_interval=0.2', 'sys.timeout=5', 'recovery_time_soft=120', 'journal_checkpoint_mb=0.01']

const nodes = new NodeSet()
afterAll(() => nodes.cleanup(), 30_000)

/** Every entry under `dir` but the MMP block: size, mtime, ctime and a digest of the content. */
async function snapshot(dir: string): Promise<Record<string, string>> {
  const out: Record<string, string> = {}
  const walk = async (d: string) => {
    for (const e of await fsp.readdir(d, { withFileTypes: true })) {
      const p = path.join(d, e.name)
      const key = path.relative(dir, p)
      if (key.startsWith('mmp')) continue
      try {
        const st = await fsp.stat(p)
        if (e.isDirectory()) {
          out[key] = `dir ${st.mtimeMs} ${st.ctimeMs}`
          await walk(p)
        } else out[key] = `${st.size} ${st.mtimeMs} ${st.ctimeMs} ${(await fsp.readFile(p)).toString('base64').slice(-64)}`
      } catch (err) {
        // Renamed away while a live node is listed (a temp file becoming CHECKPOINT): the next look differs anyway.
        if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err
      }
    }
  }
  await walk(dir)
  return out
}

/** Resolves once nothing under `dir` changed for 300 ms (no commit, apply or checkpoint under way). */
async function quiet(dir: string): Promise<void> {
  const deadline = Date.now() + 15_000
  let last = JSON.stringify(await snapshot(dir))
  for (;;) {
    await realClock.sleep(300)
    const now = JSON.stringify(await snapshot(dir))
    if (now === last) return
    if (Date.now() > deadline) throw new Error(`${dir} never stayed still for 300 ms`)
    last = now
  }
}

describe('MMP fence on real nodes', () => {
  it('a SIGSTOPped OSS resumed after its partner took over writes nothing and stops, naming the holder', async () => {
    const root = await nodes.tempDir('lp-fence')
    const dir = path.join(root, 'ost1')
    await formatOst({ dir, index: 1, mgsnode: MGS, port: PORT, params: PARAMS, failnodes: [B] })
    const a = await nodes.start({ nid: A, port: PORT, dir })

    const client = new PtlrpcClient(realClock, silentLogger, PORT)
    client.tunables.timeout = 5
    const imp = new Import({ client, target: OST, name: `${OST}-osc`, nids: [A], log: silentLogger })
    imp.connect()
    await imp.whenFull()
    // Committed work, enough journal for checkpoints to be cut; then work executed but not
    // committed yet (a commit, its apply and maybe a checkpoint are due when the node resumes).
    for (let i = 0; i < 8; i++) {
      await imp.request('ost_write', { fid: 1 + (i % 3), stripe: 0, offset: i * 4096 }, { bulk: Buffer.alloc(4096, 65 + i) })
      await imp.request('sync', {})
    }
    // Stopped while its I/O is quiet: the stale batch is then all in memory, and the commit,
    // apply and checkpoint it owes are what the fence must keep out. (A syscall the node had
    // already passed its check for and queued when stopped lands on resume, as with ext4's
    // MMP: only fencing the node, STONITH, closes that.)
    await quiet(dir)
    const pending = [...Array(6)].map((_, i) => imp.request('ost_write', { fid: 4, stripe: 0, offset: i * 8192 }, { bulk: Buffer.alloc(8192, 97 + i) }).catch(() => null))
    await Promise.all(pending)
    process.kill(a.pid, 'SIGSTOP')
    const stoppedAt = Date.now()
    void imp.close()
    await client.close()
    try {
      // The partner sees the sequence stand still, takes the target and loads what was committed.
      const b = await nodes.start({ nid: B, port: PORT, dir, log: path.join(root, 'b.log') })
      expect(b.targets).toEqual([OST])
      // Every timer of the stopped node (commit, MMP heartbeat, evictor) is overdue by now.
      await realClock.sleep(Math.max(0, COMMIT_S * 1000 + 500 - (Date.now() - stoppedAt)))
      const before = await snapshot(dir)
      expect(Object.keys(before).filter((k) => /^ost\/(journal\/\d+\.jnl|CHECKPOINT|CHECKPOINT\.prev|O\/d1\/1\.0)$/.test(k)).length).toBeGreaterThanOrEqual(4)
      process.kill(a.pid, 'SIGCONT')
      const exit = await Promise.race([a.exited, realClock.sleep(15_000).then(() => null)])
      expect(exit, 'the resumed node stops the target and, serving nothing, exits').toEqual({ code: 0, signal: null })
      expect(await snapshot(dir)).toEqual(before)
      // The partner still holds the target.
      expect(JSON.parse(await fsp.readFile(path.join(dir, 'mmp'), 'utf8'))).toMatchObject({ nid: B, pid: b.pid, state: 'active' })
      const log = (await fsp.readFile(path.join(root, `${A}.log`), 'utf8')).split('\n').filter(Boolean).map((l) => JSON.parse(l) as { msg: string; level: number })
      const line = log.find((l) => /kmmpd: device .* is already active on another node/.test(l.msg))
      expect(line, 'the console line').toBeDefined()
      expect(line!.msg).toContain(`last update node: 127.0.84.2 (${B}, pid ${b.pid})`)
      expect(line!.level).toBe(50)
      await b.stop()
    } finally {
      if (a.alive) process.kill(a.pid, 'SIGCONT')
    }
  }, 60_000)
})
