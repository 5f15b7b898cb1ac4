/**
 * What a target trusts on disk when it starts: a damaged CHECKPOINT falls back to the
 * previous generation and its journal; journal damage before the tail refuses the start
 * unless the admin says to go on without it; and a batch too big for one journal record is
 * committed in several, never losing or skipping a transaction.
 */
import { describe, it, expect, afterAll, afterEach, vi } from 'vitest'
import { promises as fsp } from 'node:fs'
import path from 'node:path'
import { ManualClock } from '../../src/common/clock.js'
import { silentLogger, type Logger } from '../../src/common/log.js'
import { LpError } from '../../src/protocol/errno.js'
import { Committer } from '../../src/server/target/committer.js'
import { Journal, scanJournal } from '../../src/server/target/journal.js'
import { LastRcvd } from '../../src/server/target/lastrcvd.js'
import { CHECKPOINT, CHECKPOINT_PREV, Checkpoints, type BatchJson } from '../../src/server/target/ondisk.js'
import { Target } from '../../src/server/target/target.js'
import { MdtBackend } from '../../src/server/mdt/mdt.js'
import { OstBackend } from '../../src/server/ost/ost.js'
import { tempDir, removeTempDirs } from '../helpers/nodes.js'
import { captureLogger } from '../helpers/log.js'
import { MDT_NAME, OST_NAME, TestClient, testTunables } from '../helpers/target.js'

afterAll(removeTempDirs)
const running: Target[] = []
afterEach(async () => {
  for (const t of running.splice(0)) await t.stop(false).catch(() => undefined)
  vi.restoreAllMocks()
})

async function open(dir: string, kind: 'mdt' | 'ost', o: { log?: Logger; discard?: boolean; checkpointBytes?: number } = {}) {
  const clock = new ManualClock()
  const mdt = kind === 'mdt' ? new MdtBackend({ dir: path.join(dir, 'mdtfs'), clock }) : undefined
  const backend = mdt ?? new OstBackend(path.join(dir, 'ostfs'))
  const target = await Target.open({
    name: kind === 'mdt' ? MDT_NAME : OST_NAME,
    kind,
    dir,
    clock,
    log: o.log ?? silentLogger,
    backend,
    replayable: true,
    tunables: testTunables({ checkpointBytes: o.checkpointBytes ?? 1 << 30 }),
    discardCorruptJournal: o.discard,
  })
  running.push(target)
  target.start()
  const c = new TestClient(target, `client-${kind}`)
  await c.connect()
  if (target.recovering) await c.replayDone()
  return { target, c, mdt }
}

async function stop(t: Target): Promise<void> {
  await t.stop(false)
  running.splice(running.indexOf(t), 1)
}

const create = (c: TestClient, name: string) => c.ok<{ attr: { fid: number } }>('mdt_create', { parent: 1, name, type: 'reg', mode: 0o644, uid: 1, gid: 2, time: 1000 })

/** An MDT with two checkpoint generations and a batch after the newest; returns the committed image. */
async function mdtWithGenerations(dir: string): Promise<{ image: unknown; lastCommitted: number }> {
  const { target, c, mdt } = await open(dir, 'mdt', { checkpointBytes: 1 })
  for (let i = 0; i < 4; i++) {
    await create(c, `f${i}`)
    await c.ok('sync')
  }
  // A checkpoint is cut by a commit into a non-empty journal file: f0's and f2's. So the
  // newest generation starts file 3 (f3 is only there), the previous one file 2.
  await vi.waitFor(async () => expect((await fsp.readdir(path.join(dir, 'journal'))).sort()).toEqual(['00000002.jnl', '00000003.jnl']))
  const image = mdt!.snapshot()
  const lastCommitted = target.lastCommitted
  await stop(target)
  return { image, lastCommitted }
}

/** The same namespace, though every start grants the MDT a further FID range. */
function expectSameNamespace(now: unknown, then: unknown): void {
  const { fidEnd: endNow, ...rest } = now as { fidEnd: number }
  const { fidEnd: endThen, ...restThen } = then as { fidEnd: number }
  expect(rest).toEqual(restThen)
  expect(endNow).toBeGreaterThan(endThen)
}

describe('checkpoint generations', () => {
  it('a torn or corrupt CHECKPOINT falls back, loudly, to the previous generation and its journal: the same state', async () => {
    for (const damage of ['truncate', 'flip'] as const) {
      const dir = await tempDir('lp-ondisk')
      const { image, lastCommitted } = await mdtWithGenerations(dir)
      const cp = path.join(dir, CHECKPOINT)
      const bytes = await fsp.readFile(cp)
      if (damage === 'truncate') await fsp.writeFile(cp, bytes.subarray(0, bytes.length >> 1))
      else {
        bytes[bytes.length - 20] ^= 0x01
        await fsp.writeFile(cp, bytes)
      }
      const cap = captureLogger()
      const again = await open(dir, 'mdt', { log: cap.log })
      expect(again.target.lastCommitted).toBe(lastCommitted)
      expectSameNamespace(again.mdt!.snapshot(), image)
      const line = cap.lines.find((l) => /falling back to the previous checkpoint generation/.test(l.msg))
      expect(line?.level).toBe(50)
      expect(line!.msg).toContain(`${cp}: ${damage === 'truncate' ? '' : 'checksum mismatch'}`)
      expect(line!.msg).toContain(path.join(dir, CHECKPOINT_PREV))
      await stop(again.target)
    }
  })

  it('refuses to start when neither generation is usable, naming both files and why', async () => {
    const dir = await tempDir('lp-ondisk')
    await mdtWithGenerations(dir)
    await fsp.writeFile(path.join(dir, CHECKPOINT), 'LPCK1 00000000 2\n{}')
    await fsp.truncate(path.join(dir, CHECKPOINT_PREV), (await fsp.stat(path.join(dir, CHECKPOINT_PREV))).size >> 1)
    const err = await open(dir, 'mdt').then(
      () => null,
      (e: unknown) => e,
    )
    expect(err).toBeInstanceOf(LpError)
    expect((err as LpError).code).toBe('EUCLEAN')
    expect((err as LpError).message).toContain(`${path.join(dir, CHECKPOINT)}: checksum mismatch`)
    expect((err as LpError).message).toMatch(new RegExp(`${path.join(dir, CHECKPOINT_PREV)}: .*truncated`))
  })

  it("the newest generation's backend state missing: the previous one is used", async () => {
    const dir = await tempDir('lp-ondisk')
    const { image } = await mdtWithGenerations(dir)
    const snaps = (await fsp.readdir(path.join(dir, 'mdtfs', 'snapshots'))).sort()
    // Both generations' snapshots are kept.
    expect(snaps).toHaveLength(2)
    await fsp.rm(path.join(dir, 'mdtfs', 'snapshots', snaps[1]!))
    const again = await open(dir, 'mdt')
    expectSameNamespace(again.mdt!.snapshot(), image)
  })
})

/** An OST with `n` writes, each its own journal record. */
async function ostWithRecords(dir: string, n: number) {
  const { target, c } = await open(dir, 'ost')
  for (let i = 0; i < n; i++) {
    await c.ok('ost_write', { fid: 1, stripe: 0, offset: i * 10 }, { bulk: Buffer.from(`write-${i}`.padEnd(10)) })
    await c.ok('sync')
  }
  await stop(target)
  const file = path.join(dir, 'journal', '00000001.jnl')
  // Where each write's record starts: transnos 1 (the connect's client_add is not one) to n.
  const offsets: number[] = []
  const buf = await fsp.readFile(file)
  for (let off = 0; off < buf.length; off += 12 + buf.readUInt32BE(off + 4)) offsets.push(off)
  return { file, offsets }
}

describe('journal damage at start', () => {
  it('refuses to start naming the file and byte offset; --discard-corrupt-journal starts from the last good record and logs what it dropped', async () => {
    const dir = await tempDir('lp-ondisk')
    const { file, offsets } = await ostWithRecords(dir, 6)
    // Records: client_add, then writes with transnos 1..6. Damage the one of transno 3.
    const at = offsets[3]!
    const buf = await fsp.readFile(file)
    buf[at + 30] ^= 0x40
    await fsp.writeFile(file, buf)

    const err = await open(dir, 'ost').then(
      () => null,
      (e: unknown) => e as LpError,
    )
    expect(err?.code).toBe('EUCLEAN')
    expect(err!.message).toContain(`journal damaged before its tail: ${file} at byte ${at} (CRC mismatch)`)
    expect(err!.message).toContain('3 valid records (transnos 4-6) follow it')
    expect(err!.message).toContain('--discard-corrupt-journal')
    // Nothing was changed by the refusal.
    expect(Buffer.compare(await fsp.readFile(file), buf)).toBe(0)

    const cap = captureLogger()
    const { target, c } = await open(dir, 'ost', { log: cap.log, discard: true })
    expect(target.lastCommitted).toBe(2)
    const r = await c.ok('ost_read', { fid: 1, stripe: 0, offset: 0, length: 20 })
    expect(r.bulk!.toString()).toBe('write-0   write-1   ')
    const line = cap.lines.find((l) => /--discard-corrupt-journal/.test(l.msg))!
    expect(line.level).toBe(50)
    expect(line.msg).toContain(`journal damaged at ${file} at byte ${at} (CRC mismatch); starting from transno 2`)
    expect(line.msg).toContain(`3 valid records (transnos 4-6) follow it in 00000001.jnl bytes ${at}-${buf.length}`)
    expect(line.msg).toMatch(/copies kept as 00000001\.jnl\.corrupt-\d+/)
    const kept = (await fsp.readdir(path.join(dir, 'journal'))).find((f) => f.includes('.corrupt-'))!
    expect(Buffer.compare(await fsp.readFile(path.join(dir, 'journal', kept)), buf)).toBe(0)
    // It goes on from there: numbering after the last good transno, and a restart finds no damage.
    expect((await c.ok('ost_write', { fid: 2, stripe: 0, offset: 0 }, { bulk: Buffer.from('after') })).transno).toBe(3)
    await c.ok('sync')
    await stop(target)
    const again = await open(dir, 'ost')
    expect(again.target.lastCommitted).toBe(3)
  })
})

describe('records bounded before anything is cleared', () => {
  async function committer(dir: string, maxRecordBytes: number) {
    const clock = new ManualClock()
    const backend = new OstBackend(path.join(dir, 'ostfs'))
    const checkpoints = await Checkpoints.load({ dir, name: OST_NAME, backend, log: silentLogger })
    const journal = await Journal.openForAppend(path.join(dir, 'journal'), 1, 0)
    const cm = new Committer(
      { clock, log: silentLogger, intervalMs: 5000, maxPendingBytes: 1 << 30, checkpointBytes: 1 << 30, checkpoints, maxRecordBytes },
      journal,
      backend,
      new LastRcvd(),
      0,
    )
    const add = (transno: number, len: number) => {
      const a = backend.apply('ost_write', { fid: 1, stripe: 0, offset: (transno - 1) * 1000 }, { client: 'c', bulk: [Buffer.alloc(len, transno)], now: 1, transno })
      cm.add({ transno, client: 'c', xid: transno, reply: a.body, redo: a.redo })
    }
    const records = async () => (await scanJournal<BatchJson>(path.join(dir, 'journal'), 1)).records
    return { cm, add, records }
  }

  it('a batch bigger than one record is committed in several, each within the limit, all in order', async () => {
    const dir = await tempDir('lp-ondisk')
    const { cm, add, records } = await committer(dir, 2500)
    for (let t = 1; t <= 7; t++) add(t, 1000)
    await cm.commit()
    expect(cm.lastCommitted).toBe(7)
    expect(cm.uncommitted).toBe(0)
    const recs = await records()
    expect(recs.length).toBeGreaterThan(1)
    for (const r of recs) expect(r.data.length + 4 + JSON.stringify(r.json).length).toBeLessThanOrEqual(2500)
    expect(recs.flatMap((r) => r.json.ents.map((e) => ('t' in e ? e.t : 0)))).toEqual([1, 2, 3, 4, 5, 6, 7])
    await cm.close(false)
  })

  it('a record that fails takes nothing from pending: last_committed stops before it, and a retry commits the rest', async () => {
    const dir = await tempDir('lp-ondisk')
    const { cm, add, records } = await committer(dir, 2500)
    for (let t = 1; t <= 6; t++) add(t, 1000)
    const orig = Journal.prototype.append
    let calls = 0
    vi.spyOn(Journal.prototype, 'append').mockImplementation(function (this: Journal, head, data) {
      if (++calls === 2) return Promise.reject(Object.assign(new Error('no space left on device'), { code: 'ENOSPC' }))
      return orig.call(this, head, data)
    })
    await expect(cm.commit()).rejects.toThrow(/no space/)
    expect(cm.lastCommitted).toBe(2)
    expect(cm.uncommitted).toBe(4)
    await cm.commit()
    expect(cm.lastCommitted).toBe(6)
    expect(cm.uncommitted).toBe(0)
    expect((await records()).flatMap((r) => r.json.ents.map((e) => ('t' in e ? e.t : 0)))).toEqual([1, 2, 3, 4, 5, 6])
    await cm.close(false)
  })
})
