import { describe, it, expect, afterAll, vi } from 'vitest'
import { promises as fsp, readlinkSync } from 'node:fs'
import path from 'node:path'
import { Journal, MAX_RECORD_PAYLOAD, scanJournal, setAside } from '../../src/server/target/journal.js'
import { tempDir, removeTempDirs } from '../helpers/nodes.js'

afterAll(removeTempDirs)

const HDR = 12
const file = (dir: string, seq: number) => path.join(dir, `${String(seq).padStart(8, '0')}.jnl`)

interface Rec {
  n: number
  tag: string
}

/** Write `count` records to journal file 1; returns each record's start offset and its data. */
async function writeRecords(dir: string, count: number, seq = 1): Promise<{ offsets: number[]; datas: Buffer[]; size: number }> {
  const j = await Journal.openForAppend(dir, seq, 0)
  const offsets: number[] = []
  const datas: Buffer[] = []
  for (let n = 0; n < count; n++) {
    offsets.push(j.bytes)
    // Data in several parts, some empty, of varied sizes.
    const parts = [Buffer.alloc(n * 37, n + 1), Buffer.alloc(0), Buffer.from(`tail-${n}`)]
    datas.push(Buffer.concat(parts))
    await j.append(JSON.stringify({ n, tag: `rec ${n} ✓` } satisfies Rec), parts)
  }
  const size = j.bytes
  await j.close()
  return { offsets, datas, size }
}

function expectPrefix(records: Array<{ json: Rec; data: Buffer }>, datas: Buffer[], count: number): void {
  expect(records.map((r) => r.json.n)).toEqual([...Array(count).keys()])
  records.forEach((r, i) => {
    expect(r.json.tag).toBe(`rec ${i} ✓`)
    expect(Buffer.compare(r.data, datas[i]!)).toBe(0)
  })
}

describe('journal', () => {
  it('scans back exactly what was appended, in order', async () => {
    const dir = await tempDir('lp-jnl')
    const { datas, size } = await writeRecords(dir, 20)
    expect((await fsp.stat(file(dir, 1))).size).toBe(size)
    const scan = await scanJournal<Rec>(dir, 1)
    expectPrefix(scan.records, datas, 20)
    expect(scan).toMatchObject({ lastSeq: 1, validBytes: size, tornBytes: 0 })
  })

  it('scans an empty or missing journal as nothing', async () => {
    const dir = await tempDir('lp-jnl')
    const scan = await scanJournal(path.join(dir, 'journal'), 1)
    expect(scan).toEqual({ records: [], lastSeq: 1, validBytes: 0, tornBytes: 0 })
    await fsp.mkdir(path.join(dir, 'journal'))
    await fsp.writeFile(path.join(dir, 'journal', 'README'), 'not a journal file')
    await fsp.writeFile(path.join(dir, 'journal', '1.jnl'), 'bad name')
    expect((await scanJournal(path.join(dir, 'journal'), 1)).records).toEqual([])
  })

  it('keeps exactly the prefix when the file is cut anywhere in its last record', async () => {
    const dir = await tempDir('lp-jnl')
    const { offsets, datas, size } = await writeRecords(dir, 6)
    const whole = await fsp.readFile(file(dir, 1))
    const last = offsets[5]!
    // Cut inside the record header, right after it, in the JSON, in the data, one byte short.
    for (const cut of [last + 1, last + HDR - 1, last + HDR, last + HDR + 10, size - 5, size - 1]) {
      await fsp.writeFile(file(dir, 1), whole.subarray(0, cut))
      const scan = await scanJournal<Rec>(dir, 1)
      expectPrefix(scan.records, datas, 5)
      expect(scan).toMatchObject({ lastSeq: 1, validBytes: last, tornBytes: cut - last })
    }
    // Cut exactly at a record boundary: nothing is torn.
    await fsp.writeFile(file(dir, 1), whole.subarray(0, last))
    const clean = await scanJournal<Rec>(dir, 1)
    expectPrefix(clean.records, datas, 5)
    expect(clean.tornBytes).toBe(0)
  })

  it('keeps exactly the prefix when a byte of the last record is flipped', async () => {
    const dir = await tempDir('lp-jnl')
    const { offsets, datas, size } = await writeRecords(dir, 6)
    const whole = await fsp.readFile(file(dir, 1))
    const last = offsets[5]!
    // magic, length, crc, JSON length, JSON, data, the very last byte
    for (const at of [last, last + 5, last + 9, last + HDR + 1, last + HDR + 8, last + HDR + 60, size - 1]) {
      const bad = Buffer.from(whole)
      bad[at] ^= 0x20
      await fsp.writeFile(file(dir, 1), bad)
      const scan = await scanJournal<Rec>(dir, 1)
      expectPrefix(scan.records, datas, 5)
      expect(scan.validBytes).toBe(last)
      expect(scan.tornBytes).toBe(size - last)
    }
  })

  it('a damaged record in the middle is damage, not a torn tail: reported with what follows it', async () => {
    const dir = await tempDir('lp-jnl')
    const { offsets, datas, size } = await writeRecords(dir, 6)
    const whole = await fsp.readFile(file(dir, 1))
    // A flipped payload byte (CRC mismatch), and a length field gone wild (runs past the end).
    for (const [at, reason] of [
      [offsets[2]! + HDR + 6, 'CRC mismatch'],
      [offsets[2]! + 4, 'runs past the end of the file'],
    ] as const) {
      const bad = Buffer.from(whole)
      bad[at] ^= 0xff
      await fsp.writeFile(file(dir, 1), bad)
      const scan = await scanJournal<Rec>(dir, 1)
      expectPrefix(scan.records, datas, 2)
      expect(scan.validBytes).toBe(offsets[2])
      expect(scan.tornBytes).toBe(0)
      expect(scan.damage).toMatchObject({ file: file(dir, 1), offset: offsets[2] })
      expect(scan.damage!.reason).toContain(reason)
      expect(scan.beyond!.regions).toEqual([{ file: file(dir, 1), from: offsets[2], to: size }])
      expect(scan.beyond!.records.map((r) => r.json.n)).toEqual([3, 4, 5])
    }
  })

  it('a record is valid only where it was written: its bytes elsewhere (in later data) do not count', async () => {
    const dir = await tempDir('lp-jnl')
    const { offsets, datas, size } = await writeRecords(dir, 3)
    const whole = await fsp.readFile(file(dir, 1))
    const rec1 = whole.subarray(offsets[1], offsets[2])
    // A last record whose data holds a copy of record 1 (a client wrote a journal file), torn by a crash.
    const j = await Journal.openForAppend(dir, 1, size)
    await j.append(JSON.stringify({ n: 3, tag: 'rec 3 ✓' }), [Buffer.alloc(100, 7), rec1, Buffer.alloc(100, 8)])
    await j.close()
    const full = (await fsp.stat(file(dir, 1))).size
    await fsp.truncate(file(dir, 1), full - 50)
    const scan = await scanJournal<Rec>(dir, 1)
    expectPrefix(scan.records, datas, 3)
    expect(scan.damage).toBeUndefined()
    expect(scan.tornBytes).toBe(full - 50 - size)
    // Record 1's bytes moved to another offset are no record either.
    await fsp.writeFile(file(dir, 1), Buffer.concat([whole, rec1]))
    const moved = await scanJournal<Rec>(dir, 1)
    expectPrefix(moved.records, datas, 3)
    expect(moved.tornBytes).toBe(rec1.length)
    expect(moved.damage).toBeUndefined()
  })

  it('any bad record in a file that is not the newest is damage, even at its end', async () => {
    const dir = await tempDir('lp-jnl')
    const { size } = await writeRecords(dir, 3, 1)
    await writeRecords(dir, 2, 2)
    const size2 = (await fsp.stat(file(dir, 2))).size
    await fsp.truncate(file(dir, 1), size - 1)
    const scan = await scanJournal<Rec>(dir, 1)
    expect(scan.records.map((r) => r.json.n)).toEqual([0, 1])
    expect(scan.lastSeq).toBe(1)
    expect(scan.tornBytes).toBe(0)
    expect(scan.damage).toMatchObject({ file: file(dir, 1), reason: expect.stringContaining('runs past the end') })
    expect(scan.beyond!.regions).toEqual([
      { file: file(dir, 1), from: scan.validBytes, to: size - 1 },
      { file: file(dir, 2), from: 0, to: size2 },
    ])
    expect(scan.beyond!.records.map((r) => r.json.n)).toEqual([0, 1])
  })

  it('a missing journal file is damage: the checkpoint\'s own, or one between two others', async () => {
    const dir = await tempDir('lp-jnl')
    await writeRecords(dir, 1, 3)
    await writeRecords(dir, 1, 5)
    const gap = await scanJournal<Rec>(dir, 3)
    expect(gap.records.map((r) => r.json.n)).toEqual([0])
    expect(gap.damage).toEqual({ file: file(dir, 4), offset: 0, reason: 'journal file missing' })
    expect(gap.beyond!.records.map((r) => r.json.n)).toEqual([0])
    const first = await scanJournal<Rec>(dir, 2)
    expect(first.records).toEqual([])
    expect(first.damage).toEqual({ file: file(dir, 2), offset: 0, reason: 'journal file missing' })
    expect(first.beyond!.regions.map((r) => r.file)).toEqual([file(dir, 3), file(dir, 5)])
  })

  it('set aside: files given up are kept under another name, the damaged one copied whole', async () => {
    const dir = await tempDir('lp-jnl')
    const { offsets } = await writeRecords(dir, 4, 1)
    await writeRecords(dir, 2, 2)
    const bad = await fsp.readFile(file(dir, 1))
    bad[offsets[1]! + HDR + 3] ^= 1
    await fsp.writeFile(file(dir, 1), bad)
    const scan = await scanJournal<Rec>(dir, 1)
    const kept = await setAside(dir, scan.beyond!.regions, 1234)
    expect(kept).toEqual([`${file(dir, 1)}.corrupt-1234`, `${file(dir, 2)}.corrupt-1234`])
    expect(Buffer.compare(await fsp.readFile(kept[0]!), bad)).toBe(0)
    expect((await fsp.readdir(dir)).sort()).toEqual(['00000001.jnl', '00000001.jnl.corrupt-1234', '00000002.jnl.corrupt-1234'])
    // The damaged file is cut at the damage when opened for appending: what is left scans clean.
    const j = await Journal.openForAppend(dir, scan.lastSeq, scan.validBytes)
    await j.close()
    expect((await fsp.stat(file(dir, 1))).size).toBe(offsets[1])
    const again = await scanJournal<Rec>(dir, 1)
    expect(again.records.map((r) => r.json.n)).toEqual([0])
    expect(again).toMatchObject({ tornBytes: 0, lastSeq: 1, validBytes: offsets[1] })
    expect(again.damage).toBeUndefined()
  })

  it('a record too big for its u32 length is refused before a byte is written', async () => {
    const dir = await tempDir('lp-jnl')
    const { size } = await writeRecords(dir, 1)
    const j = await Journal.openForAppend(dir, 1, size)
    // One 64 MiB buffer, referred to often enough to pass the u32 (only one is allocated).
    const piece = Buffer.allocUnsafe(64 << 20)
    const parts = Array<Buffer>(Math.ceil(MAX_RECORD_PAYLOAD / piece.length)).fill(piece)
    await expect(j.append('{}', parts)).rejects.toMatchObject({ code: 'EFBIG' })
    expect(j.bytes).toBe(size)
    await j.close()
    expect((await fsp.stat(file(dir, 1))).size).toBe(size)
  })

  it('appends after a torn tail once it is cut off', async () => {
    const dir = await tempDir('lp-jnl')
    const { offsets, datas, size } = await writeRecords(dir, 4)
    await fsp.truncate(file(dir, 1), size - 3)
    const scan = await scanJournal<Rec>(dir, 1)
    expect(scan.records.length).toBe(3)
    const j = await Journal.openForAppend(dir, scan.lastSeq, scan.validBytes)
    expect(j.bytes).toBe(offsets[3])
    expect((await fsp.stat(file(dir, 1))).size).toBe(offsets[3])
    await j.append(JSON.stringify({ n: 3, tag: 'rec 3 ✓' }), [datas[3]!])
    await j.close()
    const again = await scanJournal<Rec>(dir, 1)
    expectPrefix(again.records, datas, 4)
    expect(again.tornBytes).toBe(0)
  })

  it('rotates to a new file and drops the older ones', async () => {
    const dir = await tempDir('lp-jnl')
    const j = await Journal.openForAppend(dir, 1, 0)
    await j.append(JSON.stringify({ n: 0 }), [Buffer.from('a')])
    await j.append(JSON.stringify({ n: 1 }), [])
    expect(await j.rotate()).toBe(2)
    expect(j.currentSeq).toBe(2)
    expect(j.bytes).toBe(0)
    await j.append(JSON.stringify({ n: 2 }), [Buffer.from('c')])
    expect(await j.rotate()).toBe(3)
    await j.append(JSON.stringify({ n: 3 }), [Buffer.from('d')])

    const all = await scanJournal<{ n: number }>(dir, 1)
    expect(all.records.map((r) => r.json.n)).toEqual([0, 1, 2, 3])
    expect(all.records.map((r) => r.data.toString())).toEqual(['a', '', 'c', 'd'])
    expect(all.lastSeq).toBe(3)
    // A scan from a later file ignores the earlier ones.
    expect((await scanJournal<{ n: number }>(dir, 2)).records.map((r) => r.json.n)).toEqual([2, 3])

    await j.dropBefore(3)
    expect((await fsp.readdir(dir)).sort()).toEqual(['00000003.jnl'])
    expect((await scanJournal<{ n: number }>(dir, 1)).records.map((r) => r.json.n)).toEqual([3])
    await j.close()
  })

})

describe('journal write failures', () => {
  it('a failed append leaves no partial record behind', async () => {
    const dir = await tempDir('lp-jnl')
    const j = await Journal.openForAppend(dir, 1, 0)
    await j.append(JSON.stringify({ n: 0, tag: 'rec 0 ✓' }), [Buffer.from('first')])
    const good = j.bytes
    // The disk fills up in the middle of the next record: the first part is written, then ENOSPC.
    const probe = await fsp.open(path.join(dir, 'probe'), 'w')
    const proto = Object.getPrototypeOf(probe) as { writev: (...a: unknown[]) => Promise<{ bytesWritten: number }> }
    await probe.close()
    const orig = proto.writev
    let calls = 0
    const spy = vi.spyOn(proto, 'writev').mockImplementation(async function (this: unknown, bufs: unknown, position: unknown) {
      if (calls++ === 0) return orig.call(this, (bufs as Buffer[]).slice(0, 2), position)
      throw Object.assign(new Error('no space left on device'), { code: 'ENOSPC' })
    })
    await expect(j.append(JSON.stringify({ n: 1, tag: 'rec 1 ✓' }), [Buffer.alloc(5000, 1)])).rejects.toThrow(/no space/)
    spy.mockRestore()
    expect(j.bytes).toBe(good)
    expect((await fsp.stat(file(dir, 1))).size).toBe(good)
    // Once there is room again, the next record follows the last whole one.
    await j.append(JSON.stringify({ n: 1, tag: 'rec 1 ✓' }), [Buffer.from('second')])
    await j.close()
    const scan = await scanJournal<Rec>(dir, 1)
    expect(scan.records.map((r) => r.data.toString())).toEqual(['first', 'second'])
    expect(scan.tornBytes).toBe(0)
  })

  it('a failed record whose cut-off fails too is overwritten by the next: every acknowledged record scans back', async () => {
    const dir = await tempDir('lp-jnl')
    const j = await Journal.openForAppend(dir, 1, 0)
    await j.append(JSON.stringify({ n: 0, tag: 'rec 0 ✓' }), [Buffer.from('first')])
    const probe = await fsp.open(path.join(dir, 'probe'), 'w')
    const proto = Object.getPrototypeOf(probe) as fsp.FileHandle
    await probe.close()
    // The record is written whole, then its fdatasync fails, and so does the truncate that cuts it off.
    const eio = () => Object.assign(new Error('input/output error'), { code: 'EIO' })
    const datasync = vi.spyOn(proto, 'datasync').mockImplementationOnce(async () => {
      throw eio()
    })
    const truncate = vi.spyOn(proto, 'truncate').mockImplementationOnce(async () => {
      throw eio()
    })
    await expect(j.append(JSON.stringify({ n: 1, tag: 'failed' }), [Buffer.alloc(5000, 1)])).rejects.toThrow(/input\/output/)
    datasync.mockRestore()
    truncate.mockRestore()
    // Shorter than the failed one: what it leaves past its end is a torn tail, dropped.
    await j.append(JSON.stringify({ n: 1, tag: 'rec 1 ✓' }), [Buffer.from('second')])
    await j.close()
    const scan = await scanJournal<Rec>(dir, 1)
    expect(scan.records.map((r) => r.data.toString())).toEqual(['first', 'second'])
    expect(scan.damage).toBeUndefined()
    // A restart appends after the last whole record.
    const again = await Journal.openForAppend(dir, scan.lastSeq, scan.validBytes)
    await again.append(JSON.stringify({ n: 2, tag: 'rec 2 ✓' }), [Buffer.from('third')])
    await again.close()
    const rescan = await scanJournal<Rec>(dir, 1)
    expect(rescan.records.map((r) => r.data.toString())).toEqual(['first', 'second', 'third'])
    expect(rescan.tornBytes).toBe(0)
  })

  it('a failed rotation leaves the journal on its file: nothing goes to one whose entry may not be durable', async () => {
    const dir = await tempDir('lp-jnl')
    const j = await Journal.openForAppend(dir, 1, 0)
    await j.append(JSON.stringify({ n: 0, tag: 'rec 0 ✓' }), [Buffer.from('first')])
    const real = await fsp.realpath(dir)
    const probe = await fsp.open(dir, 'r')
    const proto = Object.getPrototypeOf(probe) as fsp.FileHandle
    await probe.close()
    const realSync = proto.sync
    let failed = false
    // The fsync of the directory that holds the new file's entry fails.
    const spy = vi.spyOn(proto, 'sync').mockImplementation(async function (this: fsp.FileHandle) {
      if (!failed && readlinkSync(`/proc/self/fd/${this.fd}`) === real) {
        failed = true
        throw Object.assign(new Error('input/output error'), { code: 'EIO' })
      }
      return realSync.call(this)
    })
    await expect(j.rotate()).rejects.toThrow(/input\/output/)
    spy.mockRestore()
    expect(j.currentSeq).toBe(1)
    await j.append(JSON.stringify({ n: 1, tag: 'rec 1 ✓' }), [Buffer.from('second')])
    await j.close()
    // A crash loses the new file: its entry never reached the disk.
    await fsp.rm(file(dir, 2), { force: true })
    const scan = await scanJournal<Rec>(dir, 1)
    expect(scan.records.map((r) => r.data.toString())).toEqual(['first', 'second'])
  })
})
