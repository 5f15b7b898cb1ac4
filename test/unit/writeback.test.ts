import { EventEmitter } from 'node:events'
import { describe, expect, it } from 'vitest'
import { ManualClock } from '../../src/common/clock.js'
import { silentLogger } from '../../src/common/log.js'
import { MAX_NIOBUFS } from '../../src/protocol/ops.js'
import type { Osc } from '../../src/osc/osc.js'
import { OscWriteback } from '../../src/osc/writeback.js'

/**
 * The write-back cache's RPCs: contiguous bytes leave as one run, scattered writes as one RPC
 * of many runs (niobufs) once a full RPC's worth is dirty, never more runs than MAX_NIOBUFS.
 */
interface Sent {
  offset: number
  data: Buffer
  niobufs?: Array<{ offset: number; length: number }>
  answer: () => void
}

const KiB = 1024

function setup(maxRpcBytes: number) {
  const imp = Object.assign(new EventEmitter(), { invalid: false, deactive: false, target: 'spfs-OST0001', peerCommitted: 0 })
  const sent: Sent[] = []
  let transno = 0
  const osc = {
    imp,
    write: (_fid: number, _stripe: number, offset: number, data: Buffer[], _mtime: number, o: { niobufs?: Sent['niobufs'] } = {}) =>
      new Promise((resolve) => sent.push({ offset, data: Buffer.concat(data), niobufs: o.niobufs, answer: () => resolve({ offset, size: 0, transno: ++transno }) })),
  }
  const wb = new OscWriteback(osc as unknown as Osc, { maxRpcBytes, maxRpcsInFlight: 8, maxDirtyBytes: 64 * 1024 * KiB, dirtyExpireMs: 1000 }, new ManualClock(), silentLogger)
  /** 4 KiB of a byte that names its page. */
  const page = (off: number) => Buffer.alloc(4 * KiB, (off / (4 * KiB)) % 251)
  return { wb, sent, page }
}

describe('OscWriteback RPCs', () => {
  it('sends scattered writes as one RPC of runs in offset order once a full RPC is dirty', async () => {
    const { wb, sent, page } = setup(64 * KiB)
    const offs = Array.from({ length: 16 }, (_, i) => i * 8 * KiB).reverse()
    for (const [i, off] of offs.entries()) {
      await wb.write(1, 0, off, page(off), 0)
      expect(sent).toHaveLength(i === offs.length - 1 ? 1 : 0)
    }
    const asc = [...offs].reverse()
    expect(sent[0]!.offset).toBe(0)
    expect(sent[0]!.niobufs).toEqual(asc.map((offset) => ({ offset, length: 4 * KiB })))
    expect(sent[0]!.data.equals(Buffer.concat(asc.map(page)))).toBe(true)
    sent[0]!.answer()
    await wb.flush(1)
    expect(wb.cached).toBe(0)
  })

  it('never puts more than MAX_NIOBUFS runs in one RPC', async () => {
    const { wb, sent, page } = setup(4096 * KiB)
    const n = MAX_NIOBUFS + 10
    for (let i = 0; i < n; i++) await wb.write(1, 0, i * 8 * KiB, page(i * 8 * KiB), 0)
    expect(sent).toHaveLength(0)
    const flushed = wb.flush(1)
    expect(sent.map((s) => s.niobufs?.length)).toEqual([MAX_NIOBUFS, 10])
    expect(sent[1]!.offset).toBe(MAX_NIOBUFS * 8 * KiB)
    for (const s of sent) s.answer()
    await flushed
    expect(wb.cached).toBe(0)
  })

  it('sends a contiguous run as one piece, with no niobufs', async () => {
    const { wb, sent, page } = setup(64 * KiB)
    for (let off = 0; off < 64 * KiB; off += 4 * KiB) await wb.write(1, 0, off, page(off), 0)
    expect(sent).toHaveLength(1)
    expect(sent[0]!).toMatchObject({ offset: 0, niobufs: undefined })
    expect(sent[0]!.data).toHaveLength(64 * KiB)
  })

  it('holds back a run that overlaps one in flight, and sends the others', async () => {
    const { wb, sent, page } = setup(64 * KiB)
    await wb.write(1, 0, 0, page(0), 0)
    const first = wb.flush(1)
    expect(sent).toHaveLength(1)
    await wb.write(1, 0, 0, Buffer.alloc(4 * KiB, 0xee), 0)
    await wb.write(1, 0, 16 * KiB, page(16 * KiB), 0)
    const second = wb.flush(1)
    // The rewrite of page 0 must land after the first write of it.
    expect(sent).toHaveLength(2)
    expect(sent[1]!).toMatchObject({ offset: 16 * KiB, niobufs: undefined })
    sent[0]!.answer()
    // Flushes wait for everything of the file: the third RPC goes out as soon as the first lands.
    for (let i = 0; i < 100 && sent.length < 3; i++) await new Promise((r) => setImmediate(r))
    expect(sent).toHaveLength(3)
    expect(sent[2]!.offset).toBe(0)
    expect(sent[2]!.data.equals(Buffer.alloc(4 * KiB, 0xee))).toBe(true)
    sent[1]!.answer()
    sent[2]!.answer()
    await Promise.all([first, second])
    expect(wb.cached).toBe(0)
  })
})

describe('OscWriteback and a failout import (issue 15)', () => {
  it('forgets acknowledged writes once last_committed covers them, though a failout import frees no replay list; an invalidation reports the rest once', async () => {
    const { wb, sent, page } = setup(64 * KiB)
    const imp = wb.osc.imp as unknown as EventEmitter & { invalid: boolean; peerCommitted: number }
    await wb.write(1, 0, 0, page(0), 0)
    const f1 = wb.flush(1)
    sent[0]!.answer()
    await f1
    expect(wb.uncommittedFiles).toBe(1)
    imp.peerCommitted = 1
    imp.emit('last_committed', 1)
    expect(wb.uncommittedFiles).toBe(0)

    await wb.write(2, 0, 0, page(0), 0)
    const f2 = wb.flush(2)
    sent[1]!.answer()
    await f2
    await wb.write(3, 0, 0, page(0), 0)
    expect(wb.uncommittedFiles).toBe(1)
    imp.invalid = true
    imp.emit('invalidate', 'connection lost (failout)')
    expect(wb.uncommittedFiles).toBe(0)
    expect(wb.cached).toBe(0)
    expect([1, 2, 3].map((fid) => wb.takeError(fid)?.code)).toEqual([undefined, 'EIO', 'EIO'])
    expect([2, 3].map((fid) => wb.takeError(fid))).toEqual([undefined, undefined])
  })

  it('does not record a write whose reply says it is already committed', async () => {
    const { wb, sent, page } = setup(64 * KiB)
    ;(wb.osc.imp as unknown as { peerCommitted: number }).peerCommitted = 5
    await wb.write(1, 0, 0, page(0), 0)
    const f = wb.flush(1)
    sent[0]!.answer()
    await f
    expect(wb.uncommittedFiles).toBe(0)
  })
})
