import { describe, it, expect, afterAll, afterEach, vi } from 'vitest'
import { promises as fsp, readlinkSync } from 'node:fs'
import path from 'node:path'
import { ManualClock } from '../../src/common/clock.js'
import { Journal, scanJournal } from '../../src/server/target/journal.js'
import { CHECKPOINT, CHECKPOINT_PREV, decodeCheckpoint, type BatchJson, type CheckpointFile } from '../../src/server/target/ondisk.js'
import type { Target } from '../../src/server/target/target.js'
import { OstBackend } from '../../src/server/ost/ost.js'
import { FID_RANGE, type NsImage } from '../../src/server/mdt/namespace.js'
import { MAX_FILE_SIZE } from '../../src/protocol/ops.js'
import { tempDir, removeTempDirs } from '../helpers/nodes.js'
import { openTarget, TestClient } from '../helpers/target.js'

afterAll(removeTempDirs)
afterEach(() => vi.restoreAllMocks())

const INTERVAL = 5_000
const running: Target[] = []
/** Gates left closed by a failed test would hold the stop below forever. */
const gates: Array<() => void> = []
afterEach(async () => {
  for (const open of gates.splice(0)) open()
  for (const t of running.splice(0)) await t.stop(false).catch(() => undefined)
})

async function ost(dir: string, clock = new ManualClock(), tunables = {}) {
  const r = await openTarget({ dir, kind: 'ost', clock, tunables: { commitIntervalMs: INTERVAL, ...tunables } })
  running.push(r.target)
  const c = new TestClient(r.target, 'client-a')
  await c.connectAndRecover()
  return { ...r, clock, c }
}

async function mdt(dir: string, clock = new ManualClock(), tunables = {}) {
  const r = await openTarget({ dir, kind: 'mdt', clock, tunables: { commitIntervalMs: INTERVAL, ...tunables } })
  running.push(r.target)
  const c = new TestClient(r.target, 'client-m')
  await c.connectAndRecover()
  return { ...r, clock, c }
}

const write = (c: TestClient, fid: number, offset: number, data: string | Buffer) =>
  c.ok<{ offset: number; size: number }>('ost_write', { fid, stripe: 0, offset }, { bulk: Buffer.isBuffer(data) ? data : Buffer.from(data) })
const read = async (c: TestClient, fid: number, offset = 0, length = 1 << 20) =>
  (await c.ok('ost_read', { fid, stripe: 0, offset, length })).bulk!.toString()

async function readCheckpoint(file: string): Promise<CheckpointFile> {
  const cp = decodeCheckpoint(await fsp.readFile(file))
  if (typeof cp === 'string') throw new Error(`${file}: ${cp}`)
  return cp
}

/** Transnos of the transactions the journal holds past the checkpoint (what a restart would see). */
async function journaled(dir: string): Promise<number[]> {
  const cp = await readCheckpoint(path.join(dir, CHECKPOINT)).catch(() => ({ journal_seq: 1 }))
  const scan = await scanJournal<BatchJson>(path.join(dir, 'journal'), cp.journal_seq)
  return scan.records.flatMap((r) => r.json.ents.flatMap((e) => ('t' in e ? [e.t] : [])))
}

const jnl = (seq: number) => `${String(seq).padStart(8, '0')}.jnl`

/**
 * The checkpoint that moved the journal to file `seq`, once it is written and the files
 * older than the previous generation's are gone (the previous generation keeps its own).
 */
async function checkpointed(dir: string, seq: number): Promise<CheckpointFile> {
  return vi.waitFor(async () => {
    const cp = await readCheckpoint(path.join(dir, CHECKPOINT))
    expect(cp.journal_seq).toBe(seq)
    const prev = await readCheckpoint(path.join(dir, CHECKPOINT_PREV))
    const want = Array.from({ length: seq - prev.journal_seq + 1 }, (_, i) => jnl(prev.journal_seq + i))
    expect(await fsp.readdir(path.join(dir, 'journal'))).toEqual(want)
    return cp
  })
}

/** Hold every journal append at a gate; `entered` resolves when one is waiting there. */
function gateJournal() {
  let open!: () => void
  const gate = new Promise<void>((r) => (open = r))
  gates.push(open)
  let entered!: () => void
  const waiting = new Promise<void>((r) => (entered = r))
  const orig = Journal.prototype.append
  const spy = vi.spyOn(Journal.prototype, 'append').mockImplementation(async function (this: Journal, json, data) {
    entered()
    await gate
    return orig.call(this, json, data)
  })
  return { open, waiting, spy }
}

describe('commit and transnos', () => {
  it('numbers modifying requests in order; replies carry transno and last_committed', async () => {
    const { c, target } = await ost(await tempDir('lp-commit'))
    const transnos: number[] = []
    for (let i = 0; i < 5; i++) {
      const r = await write(c, 10 + i, 0, `data ${i}`)
      expect(r.lastCommitted).toBe(0)
      transnos.push(r.transno)
    }
    expect(transnos).toEqual([1, 2, 3, 4, 5])
    // A read gets no transno; a failed write takes none either (no gap after it).
    const rd = await c.ok('ost_read', { fid: 10, stripe: 0, offset: 0, length: 10 })
    expect(rd.transno).toBe(0)
    const bad = await c.call('ost_write', { fid: 1, stripe: 0, offset: MAX_FILE_SIZE }, { bulk: Buffer.from('x') })
    expect(bad.status).toBe(-27) // EFBIG
    expect(bad.transno).toBe(0)
    expect((await write(c, 11, 100, 'more')).transno).toBe(6)
    expect(target.lastTransno).toBe(6)
    expect(target.lastCommitted).toBe(0)
  })

  it('commits every commit_interval, not before; later replies carry the new last_committed', async () => {
    const dir = await tempDir('lp-commit')
    const { c, target, clock } = await ost(dir)
    const append = vi.spyOn(Journal.prototype, 'append')
    for (let i = 0; i < 3; i++) await write(c, 1, i * 10, `w${i}`)
    await clock.advance(INTERVAL - 1)
    expect(append).not.toHaveBeenCalled()
    expect(await journaled(dir)).toEqual([])
    await clock.advance(1)
    expect(append).toHaveBeenCalledTimes(1)
    await vi.waitFor(() => expect(target.lastCommitted).toBe(3))
    expect(await journaled(dir)).toEqual([1, 2, 3])
    expect((await c.ok('ping')).lastCommitted).toBe(3)
    const w = await write(c, 1, 100, 'w3')
    expect(w.transno).toBe(4)
    expect(w.lastCommitted).toBe(3)
    // The timer goes on: the next interval commits the next batch.
    await clock.advance(INTERVAL)
    await vi.waitFor(() => expect(target.lastCommitted).toBe(4))
    expect(await journaled(dir)).toEqual([1, 2, 3, 4])
  })

  it('sync answers only once the journal holds the batch', async () => {
    const dir = await tempDir('lp-commit')
    const { c, target } = await ost(dir)
    for (let i = 0; i < 3; i++) await write(c, 1, i * 10, `w${i}`)
    const g = gateJournal()
    let answered = false
    const sync = c.ok('sync').then((r) => {
      answered = true
      return r
    })
    await g.waiting
    // The commit is on its way to the journal, held at the gate: no answer yet.
    expect(answered).toBe(false)
    expect(target.lastCommitted).toBe(0)
    expect(await journaled(dir)).toEqual([])
    g.open()
    const r = await sync
    expect(r.lastCommitted).toBe(3)
    expect(await journaled(dir)).toEqual([1, 2, 3])
  })

  it('sync with nothing uncommitted answers at once, committing nothing', async () => {
    const dir = await tempDir('lp-commit')
    const { c } = await ost(dir)
    await write(c, 1, 0, 'x')
    await c.ok('sync')
    const append = vi.spyOn(Journal.prototype, 'append')
    expect((await c.ok('sync')).lastCommitted).toBe(1)
    expect(append).not.toHaveBeenCalled()
  })

  it('a failed commit is retried: last_committed never passes what the journal lacks', async () => {
    const dir = await tempDir('lp-commit')
    const { c, target } = await ost(dir)
    for (let i = 0; i < 3; i++) await write(c, 1, i * 10, `w${i}`)
    const orig = Journal.prototype.append
    const spy = vi.spyOn(Journal.prototype, 'append').mockImplementationOnce(async () => {
      throw Object.assign(new Error('no space left on device'), { code: 'ENOSPC' })
    })
    const failed = await c.call('sync')
    expect(failed.status).toBe(-28)
    expect(failed.lastCommitted).toBe(0)
    spy.mockImplementation(function (this: Journal, json, data) {
      return orig.call(this, json, data)
    })
    await write(c, 2, 0, 'w3')
    expect((await c.ok('sync')).lastCommitted).toBe(4)
    expect(await journaled(dir)).toEqual([1, 2, 3, 4])
    await target.stop(false)
    running.splice(0)
    const again = await ost(dir)
    expect(again.target.lastCommitted).toBe(4)
    expect(await read(again.c, 1, 20, 2)).toBe('w2')
  })

  it('sync is answered once its batch is in the journal, even if the checkpoint after it fails', async () => {
    const dir = await tempDir('lp-commit')
    const { c, target } = await ost(dir, new ManualClock(), { checkpointBytes: 1 })
    await write(c, 1, 0, 'first')
    let answered = false
    let answeredBeforeCheckpoint: boolean | undefined
    vi.spyOn(OstBackend.prototype, 'persist').mockImplementationOnce(async () => {
      answeredBeforeCheckpoint = answered
      throw Object.assign(new Error('no space left on device'), { code: 'ENOSPC' })
    })
    const sync = c.call('sync').then((r) => ((answered = true), r))
    await vi.waitFor(() => expect(answeredBeforeCheckpoint).toBeDefined())
    expect(answeredBeforeCheckpoint).toBe(true)
    expect((await sync).status).toBe(0)
    // The journal still holds everything: nothing is lost across a restart.
    await write(c, 1, 5, '+second')
    expect((await c.ok('sync')).lastCommitted).toBe(2)
    await target.stop(false)
    running.splice(0)
    const again = await ost(dir)
    expect(await read(again.c, 1)).toBe('first+second')
  })

  it('a failed checkpoint fsync turns checkpoints off: no later one covers what it left off the disk', async () => {
    const dir = await tempDir('lp-commit')
    const { c, target } = await ost(dir, new ManualClock(), { checkpointBytes: 1 })
    const obj = path.join(dir, 'ostfs', 'O', 'd1', '1.0')
    const probe = await fsp.open(dir, 'r')
    const proto = Object.getPrototypeOf(probe) as fsp.FileHandle
    await probe.close()
    const realSync = proto.sync
    let failed = false
    // The object's fsync fails with EIO once; Linux then marks its pages clean, so the next fsync reports nothing.
    vi.spyOn(proto, 'sync').mockImplementation(async function (this: fsp.FileHandle) {
      if (!failed && readlinkSync(`/proc/self/fd/${this.fd}`) === obj) {
        failed = true
        throw Object.assign(new Error('input/output error'), { code: 'EIO' })
      }
      return realSync.call(this)
    })
    await write(c, 1, 0, 'first')
    await c.ok('sync') // cuts a checkpoint, whose fsync of object 1 fails
    await vi.waitFor(() => expect(failed).toBe(true))
    // Enough batches for the journal to reach checkpointBytes again, and again.
    for (let i = 0; i < 4; i++) {
      await write(c, 2, i, 'x')
      await c.ok('sync')
    }
    await target.stop(false) // waits for what is applying, checkpoints included
    running.splice(0)
    expect(await fsp.readFile(path.join(dir, CHECKPOINT)).catch(() => null)).toBeNull()
    expect(await journaled(dir)).toEqual([1, 2, 3, 4, 5])
    // The pages the failed fsync dropped: the journal redoes them at the restart.
    await fsp.truncate(obj, 0)
    const again = await ost(dir)
    expect(await read(again.c, 1)).toBe('first')
  })

  it('a batch whose journal rotation fails is applied all the same; a sync waiting on that commit is answered', async () => {
    const dir = await tempDir('lp-commit')
    const { c, target } = await ost(dir, new ManualClock(), { checkpointBytes: 1 })
    let second: Promise<boolean> | undefined
    vi.spyOn(Journal.prototype, 'rotate').mockImplementationOnce(async () => {
      // Meanwhile another write, and a sync that waits for the commit running.
      await write(c, 2, 0, 'second')
      second = c.call('sync').then((r) => r.status === 0)
      throw Object.assign(new Error('no space left on device'), { code: 'ENOSPC' })
    })
    await write(c, 1, 0, 'first')
    expect((await c.call('sync')).status).toBe(0) // durable before the rotation
    await vi.waitFor(() => expect(second).toBeDefined())
    let answered: boolean | undefined
    void second!.then((ok) => (answered = ok))
    await vi.waitFor(() => expect(answered).toBe(true))
    // More batches, enough to cut checkpoints were they still on.
    for (let i = 0; i < 3; i++) {
      await write(c, 3, i, 'x')
      await c.ok('sync')
    }
    await target.stop(false)
    running.splice(0)
    const again = await ost(dir)
    expect(await read(again.c, 1)).toBe('first')
    expect(await read(again.c, 2)).toBe('second')
  })

  it('commits early once too many bytes wait', async () => {
    const dir = await tempDir('lp-commit')
    const { c, target } = await ost(dir, new ManualClock(), { maxPendingBytes: 3000 })
    await write(c, 1, 0, Buffer.alloc(1000, 1))
    await write(c, 1, 1000, Buffer.alloc(1000, 2))
    expect(target.lastCommitted).toBe(0)
    await write(c, 1, 2000, Buffer.alloc(1000, 3))
    await vi.waitFor(() => expect(target.lastCommitted).toBe(3))
    expect(await journaled(dir)).toEqual([1, 2, 3])
  })

  it('barrier: commits everything, then nothing more; sync answers at once and last_committed stays', async () => {
    const dir = await tempDir('lp-commit')
    const { c, target, clock } = await ost(dir)
    for (let i = 0; i < 3; i++) await write(c, 1, i * 10, `before${i}`)
    expect(await target.barrier()).toBe(3)
    expect(target.barrierSet).toBe(true)
    expect(await journaled(dir)).toEqual([1, 2, 3])

    const append = vi.spyOn(Journal.prototype, 'append')
    // Execution and numbering go on.
    const after = []
    for (let i = 0; i < 3; i++) after.push(await write(c, 2, i * 10, `after${i}`))
    expect(after.map((r) => r.transno)).toEqual([4, 5, 6])
    expect(after.map((r) => r.lastCommitted)).toEqual([3, 3, 3])
    expect(await read(c, 2, 0, 6)).toBe('after0')
    // sync is answered without committing.
    expect((await c.ok('sync')).lastCommitted).toBe(3)
    await clock.advance(10 * INTERVAL)
    expect(target.lastCommitted).toBe(3)
    // A stop after a barrier, even a clean one, commits nothing more.
    await target.stop(true)
    running.splice(0)
    expect(append).not.toHaveBeenCalled()
    expect(await journaled(dir)).toEqual([1, 2, 3])

    const again = await ost(dir)
    expect(again.target.lastCommitted).toBe(3)
    expect(await read(again.c, 1, 0, 7)).toBe('before0')
    expect(await read(again.c, 2)).toBe('')
  })

  it('a crash loses exactly the uncommitted tail', async () => {
    const dir = await tempDir('lp-commit')
    const { c, target } = await ost(dir)
    await write(c, 1, 0, 'committed')
    await write(c, 2, 0, 'also committed')
    await c.ok('sync')
    await write(c, 1, 0, 'LOST!!!!!')
    await write(c, 3, 0, 'lost too')
    await target.stop(false)
    running.splice(0)

    const again = await ost(dir)
    expect(again.target.lastCommitted).toBe(2)
    expect(again.target.lastTransno).toBe(2)
    expect(await read(again.c, 1)).toBe('committed')
    expect(await read(again.c, 2)).toBe('also committed')
    expect(await read(again.c, 3)).toBe('')
    // Numbering resumes after what survived.
    expect((await write(again.c, 4, 0, 'x')).transno).toBe(3)
  })

  it('a clean stop commits what is pending', async () => {
    const dir = await tempDir('lp-commit')
    const { c, target } = await ost(dir)
    await write(c, 1, 0, 'abc')
    await target.stop(true)
    running.splice(0)
    const again = await ost(dir)
    expect(again.target.lastCommitted).toBe(1)
    expect(await read(again.c, 1)).toBe('abc')
  })

  it('a clean stop whose final commit fails still stops: the error reaches the caller, nothing commits after', async () => {
    const dir = await tempDir('lp-commit')
    const { c, target, clock } = await ost(dir)
    await write(c, 1, 0, 'abc')
    const append = vi.spyOn(Journal.prototype, 'append').mockImplementationOnce(async () => {
      throw Object.assign(new Error('no space left on device'), { code: 'ENOSPC' })
    })
    const journalClose = vi.spyOn(Journal.prototype, 'close')
    const backendClose = vi.spyOn(OstBackend.prototype, 'close')
    await expect(target.stop(true)).rejects.toThrow(/no space/)
    running.splice(0)
    // The commit timer is off: the stopped target commits nothing more.
    await clock.advance(10 * INTERVAL)
    await new Promise((resolve) => setTimeout(resolve, 50))
    expect(append).toHaveBeenCalledTimes(1)
    expect(journalClose).toHaveBeenCalledTimes(1)
    expect(backendClose).toHaveBeenCalledTimes(1)
  })

  it('checkpoints cut the journal; a restart from checkpoint + journal gives the identical state', async () => {
    const dir = await tempDir('lp-commit')
    // Checkpoint as soon as the journal holds anything.
    const { c, target, mdt: backend } = await mdt(dir, new ManualClock(), { checkpointBytes: 1 })
    const create = (parent: number, name: string, type: 'reg' | 'dir' = 'reg') =>
      c.ok<{ attr: { fid: number } }>('mdt_create', { parent, name, type, mode: 0o644, uid: 1, gid: 2, time: 1000 + c.xid })
    // The connect committed the client's last_rcvd slot: the journal holds a batch.
    expect(await fsp.readFile(path.join(dir, CHECKPOINT)).catch(() => null)).toBeNull()
    const d = await create(1, 'dir', 'dir')
    for (let i = 0; i < 5; i++) await create(d.body.attr.fid, `f${i}`)
    await c.ok('sync') // cuts a checkpoint of transnos 1-6 (after answering)
    const cp = await checkpointed(dir, 2)
    expect(cp.transno).toBe(6)
    expect(cp.lastrcvd.clients.map((x) => x.uuid)).toEqual(['client-m'])
    expect(await journaled(dir)).toEqual([])

    // The new journal file was empty: this batch just goes to the journal.
    await c.ok('mdt_unlink', { parent: d.body.attr.fid, name: 'f1', dir: false, time: 2000 })
    await c.ok('mdt_rename', { parent: d.body.attr.fid, name: 'f2', new_parent: 1, new_name: 'moved', time: 2001 })
    await c.ok('sync')
    expect(await journaled(dir)).toEqual([7, 8])

    await create(1, 'after-checkpoint')
    await c.ok('mdt_setattr', { fid: d.body.attr.fid, mode: 0o700 })
    await c.ok('sync') // cuts a checkpoint of 1-10
    const cp2 = await checkpointed(dir, 3)
    expect(cp2.transno).toBe(10)
    expect(await journaled(dir)).toEqual([])
    // One more batch stays in the journal only.
    await create(1, 'journal-only')
    await c.ok('sync')
    expect(await journaled(dir)).toEqual([11])
    const committedImage = backend!.snapshot()
    // Uncommitted at the crash: lost.
    await create(1, 'uncommitted')
    await target.stop(false)
    running.splice(0)

    const again = await mdt(dir)
    expect(again.target.lastCommitted).toBe(11)
    // Plus the FID range a restarted MDT grants itself at once: it never gives a FID below the committed end.
    const ranged = (n: number) => ({ ...(committedImage as NsImage), fidEnd: (committedImage as NsImage).fidEnd! + n * FID_RANGE })
    expect(again.mdt!.snapshot()).toEqual(ranged(1))
    // The same again after a clean stop that commits nothing new.
    await again.target.stop(true)
    running.splice(0)
    const third = await openTarget({ dir, kind: 'mdt', clock: new ManualClock() })
    running.push(third.target)
    expect(third.target.lastCommitted).toBe(11)
    expect(third.mdt!.snapshot()).toEqual(ranged(2))
  })

  it('OST data survive checkpoints and restarts byte for byte', async () => {
    const dir = await tempDir('lp-commit')
    const { c, target } = await ost(dir, new ManualClock(), { checkpointBytes: 10_000 })
    const expected = new Map<number, Buffer>()
    let seed = 7
    const rnd = (n: number) => (seed = (seed * 1103515245 + 12345) % 2 ** 31) % n
    for (let i = 0; i < 60; i++) {
      const fid = 1 + rnd(4)
      const off = rnd(20_000)
      const data = Buffer.alloc(1 + rnd(3000), 33 + rnd(90))
      await write(c, fid, off, data)
      const cur = expected.get(fid) ?? Buffer.alloc(0)
      const next = Buffer.alloc(Math.max(cur.length, off + data.length))
      cur.copy(next)
      data.copy(next, off)
      expected.set(fid, next)
      if (i % 7 === 6) await c.ok('sync')
    }
    await c.ok('sync')
    await target.stop(false) // waits for the commit running, checkpoint included
    running.splice(0)
    const cp = await readCheckpoint(path.join(dir, CHECKPOINT))
    expect(cp.transno).toBeGreaterThan(0)
    const again = await ost(dir)
    expect(again.target.lastCommitted).toBe(60)
    for (const [fid, buf] of expected) {
      const r = await again.c.ok('ost_read', { fid, stripe: 0, offset: 0, length: 1 << 20 })
      expect(Buffer.compare(r.bulk!, buf)).toBe(0)
    }
  })
})
