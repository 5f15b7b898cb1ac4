/**
 * Crash durability of real server nodes: an OST and an MGS+MDT under heavy modifying load
 * with a short commit interval are SIGKILLed at random moments, while a commit is being
 * written, several times over. After every restart the target must start, and what it holds
 * must be exactly the committed prefix of what it executed:
 *   - its last_committed covers every transno it ever told a client was committed;
 *   - every write/create with a transno <= last_committed is there, byte for byte;
 *   - every one with a higher transno is not there at all (lost with the uncommitted tail);
 *   - one whose reply never came is either wholly there or wholly absent, and stays so.
 * Verification uses a fresh client after abort_recovery, so no replay can mask a loss.
 */
import { describe, it, expect, afterAll, vi } from 'vitest'
import { randomBytes } from 'node:crypto'
import { promises as fsp } from 'node:fs'
import path from 'node:path'
import { realClock } from '../../src/common/clock.js'
import { silentLogger } from '../../src/common/log.js'
import { PtlrpcClient } from '../../src/ptlrpc/client.js'
import { Import } from '../../src/ptlrpc/import.js'
import type { DirEntry, MdtAttr } from '../../src/protocol/ops.js'
import { NodeSet, formatMgsMdt, formatOst, type NodeProc } from '../helpers/nodes.js'

const PORT = 21020
const MDS = '127.0.20.1@tcp'
const OSS = '127.0.20.2@tcp'
const OST = 'spfs-OST0001'
const MDT = 'spfs-MDT0000'
const PARAMS = ['commit_interval=0.2', 'mmp_interval=0.1', 'sys.timeout=5']
const CRASHES = 4
const SLOT = 64 * 1024
const FIDS = 8
const WRITERS = 8
const CREATORS = 2

const nodes = new NodeSet()
afterAll(() => nodes.cleanup(), 30_000)

type Fate = 'present' | 'absent'

interface Slot {
  round: number
  fid: number
  offset: number
  data: Buffer
  /** From the reply; undefined while in flight or when the reply never came. */
  transno?: number
  answered: boolean
  /** Settled by an earlier verification: it must stay so. */
  fate?: Fate
}

interface Created {
  name: string
  transno?: number
  fid?: number
  answered: boolean
  fate?: Fate
}

/** One round's client: its own uuid, an import per target. */
function client() {
  const c = new PtlrpcClient(realClock, silentLogger, PORT)
  c.tunables.timeout = 5
  const ost = new Import({ client: c, target: OST, name: `${OST}-osc`, nids: [OSS], log: silentLogger })
  const mdt = new Import({ client: c, target: MDT, name: `${MDT}-mdc`, nids: [MDS], log: silentLogger })
  const close = async () => {
    await Promise.all([ost.close(), mdt.close()])
    await c.close()
  }
  return { c, ost, mdt, close }
}

async function connect(imp: Import): Promise<void> {
  imp.connect()
  await imp.whenFull()
}

async function lastCommitted(n: NodeProc, kind: 'ost' | 'mdt'): Promise<{ lc: number; recovering: boolean }> {
  const s = await n.admin<{ mounts: Array<{ targets: Array<{ kind: string; last_committed: number; recovering: boolean }> }> }>({ cmd: 'status' })
  const t = s.mounts.flatMap((m) => m.targets).find((x) => x.kind === kind)!
  return { lc: t.last_committed, recovering: t.recovering }
}

/** SIGKILL once the target's journal grows (a commit being written), or after `maxMs` anyway. */
async function killDuringCommit(n: NodeProc, journalDir: string, maxMs: number): Promise<boolean> {
  const size = async () => {
    const files = (await fsp.readdir(journalDir).catch(() => [] as string[])).filter((f) => f.endsWith('.jnl')).sort()
    if (!files.length) return -1
    return (await fsp.stat(path.join(journalDir, files[files.length - 1]!)).catch(() => ({ size: -1 }))).size
  }
  const start = Date.now()
  const first = await size()
  let grew = false
  while (Date.now() - start < maxMs) {
    if ((await size()) !== first) {
      grew = true
      break
    }
  }
  await n.kill9()
  return grew
}

function isZero(b: Buffer): boolean {
  for (let i = 0; i < b.length; i++) if (b[i] !== 0) return false
  return true
}

describe('crash durability', () => {
  it(`a target SIGKILLed mid-commit ${CRASHES} times restarts with exactly its committed prefix`, async () => {
    const root = await nodes.tempDir('lp-dur')
    const mdsDir = path.join(root, 'mdt0')
    const ossDir = path.join(root, 'ost1')
    await formatMgsMdt({ dir: mdsDir, port: PORT, params: PARAMS })
    await formatOst({ dir: ossDir, index: 1, mgsnode: MDS, port: PORT, params: PARAMS })
    const slots: Slot[] = []
    const created: Created[] = []
    /** The files the writers write, made (and synced) on the MDT first: an object no file names is an orphan, destroyed at the MDT's next orphan cleanup. */
    const fids: number[] = []
    const perFid = new Map<number, number>()
    let maxOstSeen = 0 // highest last_committed the OST ever told a client
    let maxMdtSeen = 0
    let synced = 0 // highest OST transno covered by a sync that was answered
    const summary: string[] = []

    for (let round = 0; round <= CRASHES; round++) {
      const t0 = Date.now()
      // 1. (Re)start: it must come up whatever state the crash left.
      const [mds, oss] = await Promise.all([
        nodes.start({ nid: MDS, port: PORT, dir: mdsDir }),
        nodes.start({ nid: OSS, port: PORT, dir: ossDir }),
      ])
      expect(oss.targets).toEqual([OST])
      expect(mds.targets).toEqual(['MGS', MDT])
      // The OST registered with the MGS (for good) before a layout names it.
      if (round === 0) await nodes.ospConnected(oss)
      const ostState = await lastCommitted(oss, 'ost')
      const mdtState = await lastCommitted(mds, 'mdt')
      expect(ostState.recovering).toBe(round > 0)
      // Nothing a sync confirmed, nor anything a client was told is committed, may be missing.
      expect(ostState.lc).toBeGreaterThanOrEqual(synced)
      expect(ostState.lc).toBeGreaterThanOrEqual(maxOstSeen)
      expect(mdtState.lc).toBeGreaterThanOrEqual(maxMdtSeen)
      if (round > 0) {
        // Verify with a fresh client, the old one evicted: no replay may hide a loss.
        await oss.admin({ cmd: 'abort_recovery', dir: ossDir })
        await mds.admin({ cmd: 'abort_recovery', dir: mdsDir })
      }
      const cl = client()
      try {
        await Promise.all([connect(cl.ost), connect(cl.mdt)])
        // The connect replies carried the same last_committed.
        expect(cl.ost.peerCommitted).toBe(ostState.lc)
        expect(cl.mdt.peerCommitted).toBe(mdtState.lc)

        if (round === 0) {
          for (let k = 0; k < FIDS; k++) {
            const r = await cl.mdt.request<{ attr: MdtAttr }>('mdt_create', { parent: 1, name: `data${k}`, type: 'reg', mode: 0o644, uid: 0, gid: 0, time: Date.now(), layout: { stripe_size: SLOT, osts: [1] } })
            fids.push(r.body.attr.fid)
            perFid.set(r.body.attr.fid, 0)
          }
          await cl.mdt.request('sync', {})
        }

        // 2. Verify every write ever made against the prefix rule.
        const L = ostState.lc
        for (const fid of fids) {
          const mine = slots.filter((s) => s.fid === fid)
          if (!mine.length) continue
          const len = perFid.get(fid)! * SLOT
          const buf = Buffer.alloc(len)
          for (let off = 0; off < len; off += 8 << 20) {
            const r = await cl.ost.request<{ length: number }>('ost_read', { fid, stripe: 0, offset: off, length: Math.min(8 << 20, len - off) })
            Buffer.concat(r.bulk).copy(buf, off)
          }
          for (const s of mine) {
            const got = buf.subarray(s.offset, s.offset + SLOT)
            const fate: Fate | 'torn' = got.equals(s.data) ? 'present' : isZero(got) ? 'absent' : 'torn'
            const what = `round ${round}: write fid ${fid} @${s.offset} transno ${s.transno ?? '?'} (last_committed ${L})`
            expect(fate, what).not.toBe('torn')
            if (s.fate) expect(fate, what).toBe(s.fate)
            else if (s.answered) expect(fate, what).toBe(s.transno! <= L ? 'present' : 'absent')
            s.fate = fate as Fate
          }
        }
        const Lm = mdtState.lc
        const names = new Map<string, DirEntry>()
        for (let cookie = 0; ; ) {
          const r = await cl.mdt.request<{ entries: DirEntry[]; next: number | null }>('mdt_readdir', { fid: 1, cookie, count: 1000 })
          for (const e of r.body.entries) names.set(e.name, e)
          if (r.body.next === null) break
          cookie = r.body.next
        }
        for (const f of created) {
          const e = names.get(f.name)
          const fate: Fate = e ? 'present' : 'absent'
          const what = `round ${round}: create ${f.name} transno ${f.transno ?? '?'} (last_committed ${Lm})`
          if (f.fate) expect(fate, what).toBe(f.fate)
          else if (f.answered) expect(fate, what).toBe(f.transno! <= Lm ? 'present' : 'absent')
          if (e && f.answered) expect(e.fid, what).toBe(f.fid)
          f.fate = fate
          names.delete(f.name)
        }
        for (let k = 0; k < FIDS; k++) names.delete(`data${k}`)
        expect([...names.keys()], 'names nobody created').toEqual([])
        const restartMs = Date.now() - t0
        if (round === CRASHES) break

        // 3. Heavy load: writers, creators and syncs, until the crash.
        let stop = false
        let syncCovered = 0
        const writer = async () => {
          while (!stop) {
            const fid = fids[Math.floor(Math.random() * FIDS)]!
            const n = perFid.get(fid)!
            perFid.set(fid, n + 1)
            const s: Slot = { round, fid, offset: n * SLOT, data: randomBytes(SLOT), answered: false }
            slots.push(s)
            try {
              const r = await cl.ost.request('ost_write', { fid, stripe: 0, offset: s.offset }, { bulk: s.data })
              s.transno = r.transno
              s.answered = true
            } catch {
              return // the import was closed after the crash
            }
          }
        }
        const creator = async (k: number) => {
          for (let i = 0; !stop; i++) {
            const f: Created = { name: `r${round}-${k}-${i}`, answered: false }
            created.push(f)
            try {
              const r = await cl.mdt.request<{ attr: MdtAttr }>('mdt_create', { parent: 1, name: f.name, type: 'reg', mode: 0o644, uid: 0, gid: 0, time: Date.now() })
              f.transno = r.transno
              f.fid = r.body.attr.fid
              f.answered = true
            } catch {
              return
            }
          }
        }
        const syncer = async () => {
          while (!stop) {
            await realClock.sleep(100)
            // Every write of this round answered before the sync is sent is covered by it
            // (earlier rounds' lost writes had transnos that are numbered again now).
            const covered = Math.max(0, ...slots.filter((s) => s.round === round && s.answered).map((s) => s.transno!))
            try {
              await cl.ost.request('sync', {})
            } catch {
              return
            }
            syncCovered = Math.max(syncCovered, covered)
          }
        }
        const load = Promise.all([...Array(WRITERS)].map(writer).concat([...Array(CREATORS)].map((_, k) => creator(k)), syncer()))
        // 4. Once both targets committed some of the load (however slow the machine), crash
        // both nodes at random moments, each while its journal is being written.
        await vi.waitFor(
          () => {
            expect(cl.ost.peerCommitted).toBeGreaterThan(ostState.lc)
            expect(cl.mdt.peerCommitted).toBeGreaterThan(mdtState.lc)
          },
          { timeout: 20_000, interval: 20 },
        )
        await realClock.sleep(200 + Math.floor(Math.random() * 800))
        const midCommit = await Promise.all([
          killDuringCommit(oss, path.join(ossDir, 'ost', 'journal'), 400),
          realClock.sleep(Math.floor(Math.random() * 200)).then(() => killDuringCommit(mds, path.join(mdsDir, 'mdt', 'journal'), 400)),
        ])
        stop = true
        await cl.close()
        await load
        // What the client learnt before the crash: it can only have come from the journal.
        maxOstSeen = Math.max(maxOstSeen, cl.ost.peerCommitted)
        maxMdtSeen = Math.max(maxMdtSeen, cl.mdt.peerCommitted)
        expect(syncCovered).toBeLessThanOrEqual(cl.ost.peerCommitted)
        synced = Math.max(synced, syncCovered)
        const written = slots.filter((s) => s.round === round && s.answered).length
        summary.push(
          `round ${round}: restart+verify ${restartMs} ms, ost lc ${ostState.lc} mdt lc ${mdtState.lc}; then ${written} writes ` +
            `(${(written * SLOT) / 2 ** 20} MiB), ost told ${cl.ost.peerCommitted}, mdt told ${cl.mdt.peerCommitted}, journal growing at the kills ${midCommit}`,
        )
      } finally {
        await cl.close()
      }
    }

    // The last restart, cleanly: the client leaves, the nodes stop with SIGTERM.
    const mds = nodes.running.find((n) => n.nid === MDS)!
    const oss = nodes.running.find((n) => n.nid === OSS)!
    const last = client()
    await Promise.all([connect(last.ost), connect(last.mdt)])
    const w = await last.ost.request('ost_write', { fid: fids[0], stripe: 0, offset: 0 }, { bulk: Buffer.from('the end') })
    await last.close()
    // The MDT first: its OSP, a client of the OST since the MDT started, disconnects cleanly.
    await mds.stop()
    await oss.stop()
    const again = await nodes.start({ nid: OSS, port: PORT, dir: ossDir })
    const st = await lastCommitted(again, 'ost')
    expect(st).toEqual({ lc: w.transno, recovering: false })
    console.log(summary.join('\n'))
  }, 90_000)
})
