import { describe, it, expect, afterAll, afterEach, vi } from 'vitest'
import { promises as fsp, readlinkSync } from 'node:fs'
import path from 'node:path'
import { MAX_TOMBSTONES, OstBackend } from '../../src/server/ost/ost.js'
import { ObjectStore } from '../../src/server/ost/store.js'
import { MAX_FILE_SIZE, MAX_TIME_MS, type ObjAttr, type OpReplies, type OstListEntry } from '../../src/protocol/ops.js'
import type { Redo } from '../../src/server/target/backend.js'
import { LpError } from '../../src/protocol/errno.js'
import { tempDir, removeTempDirs } from '../helpers/nodes.js'
import { chunked } from '../helpers/target.js'

afterAll(removeTempDirs)

const open: OstBackend[] = []
afterEach(async () => {
  for (const b of open.splice(0)) await b.close()
})

/** A query's context: queries use only the client (for capabilities, which an unkeyed OST does not check). */
const Q = { client: 'c1', bulk: [], now: 0, transno: 0 }

/** An OST backend and a model of what each object must read back as. */
async function setup(dir?: string) {
  const root = dir ?? (await tempDir('lp-ost'))
  const b = new OstBackend(root)
  open.push(b)
  await b.load()
  const redo: Redo[] = []
  let now = 1_700_000_000_000
  let transno = 100
  /** Execute under the next transno; a replay passes its original transno and reply. */
  const apply = (op: string, args: unknown, bulk: Buffer = Buffer.alloc(0), replay?: { transno: number; reply: unknown }) => {
    const r = b.apply(op, args, { client: 'c1', bulk: chunked(bulk), now: ++now, transno: replay?.transno ?? ++transno, replayReply: replay?.reply })
    redo.push(...r.redo)
    return r.body as Record<string, unknown>
  }
  const write = (fid: number, stripe: number, offset: number, data: Buffer | string, append = false) =>
    apply('ost_write', { fid, stripe, offset, append }, Buffer.isBuffer(data) ? data : Buffer.from(data))
  const punch = (fid: number, stripe: number, size: number) => apply('ost_punch', { fid, stripe, size })
  const destroy = (...fids: number[]) => apply('ost_destroy', { fids })
  const attrs = async (...objs: Array<[number, number]>) =>
    ((await b.query('ost_getattr', { objects: objs.map(([fid, stripe]) => ({ fid, stripe })) }, Q)).body as { attrs: (ObjAttr | null)[] }).attrs
  const read = async (fid: number, stripe: number, offset = 0, length = 1 << 20) => {
    const [glimpsed] = await attrs([fid, stripe])
    const r = await b.query('ost_read', { fid, stripe, offset, length }, Q)
    const body = r.body as OpReplies['ost_read']
    expect(body.length).toBe(r.bulk!.length)
    // Every read can stand in for a glimpse: it says what ost_getattr says of the object.
    expect(body.attr).toEqual(glimpsed)
    return r.bulk!
  }
  const objects = async () => ((await b.query('statfs', {}, Q)).body as { objects: number }).objects
  /** Commit the first `n` redo records (all by default), as the committer does after the journal. */
  const commit = async (n = redo.length) => b.afterCommit(redo.splice(0, n))
  const list = async (after = 0, count = 1024) => (await b.query('ost_list', { after, count }, Q)).body as { entries: OstListEntry[]; next: number | null }
  return { root, b, redo, apply, write, punch, destroy, read, attrs, objects, commit, list, lastTransno: () => transno }
}

/** What a sequence of writes and punches leaves, computed the simple way. */
class Model {
  buf = Buffer.alloc(0)
  write(off: number, data: Buffer | string) {
    const d = Buffer.isBuffer(data) ? data : Buffer.from(data)
    if (!d.length) return
    const next = Buffer.alloc(Math.max(this.buf.length, off + d.length))
    this.buf.copy(next)
    d.copy(next, off)
    this.buf = next
  }
  punch(size: number) {
    const next = Buffer.alloc(size)
    this.buf.copy(next, 0, 0, Math.min(size, this.buf.length))
    this.buf = next
  }
}

const pat = (n: number, seed: number) => Buffer.from(Array.from({ length: n }, (_, i) => (i * 7 + seed * 13) % 251))

describe('OST objects', () => {
  it('the object store zeroes what an object does not give, whatever the buffer held before', async () => {
    const store = new ObjectStore(await tempDir('lp-ost'))
    await store.load()
    await store.write(3, 0, 4096, [pat(100, 5)], 1)
    const read = async (fid: number, off: number, n: number) => {
      const buf = Buffer.alloc(n, 0xee)
      await store.read(fid, 0, off, buf)
      return buf
    }
    try {
      // No such object; past the end; a hole, then bytes, then past the end.
      expect((await read(9, 0, 8192)).equals(Buffer.alloc(8192))).toBe(true)
      expect((await read(3, 8192, 4096)).equals(Buffer.alloc(4096))).toBe(true)
      expect((await read(3, 4000, 300)).equals(Buffer.concat([Buffer.alloc(96), pat(100, 5), Buffer.alloc(104)]))).toBe(true)
    } finally {
      await store.close()
    }
  })

  it('closes the handles it evicts past its open limit behind the request, and forgets them once closed, also with no checkpoint', async () => {
    const store = new ObjectStore(await tempDir('lp-ost'))
    await store.load()
    try {
      for (let fid = 1; fid <= 200; fid++) await store.write(fid, 0, 0, [pat(10, fid)], 1)
      await store.syncAll()
      expect(store.closingHandles).toBe(0)
      // Reads only, as an OST that never checkpoints: what they evict is forgotten once closed.
      const buf = Buffer.alloc(10)
      for (let fid = 1; fid <= 200; fid++) {
        await store.read(fid, 0, 0, buf)
        expect(buf.equals(pat(10, fid))).toBe(true)
      }
      await vi.waitFor(() => expect(store.closingHandles).toBe(0), { timeout: 5000, interval: 10 })
    } finally {
      await store.close()
    }
  })

  it('requests reaching an unopened object at once share one open: none is left open after close, nor on a destroyed file', async () => {
    const dir = await tempDir('lp-ost')
    /** This process's descriptors on files under the store (a removed file's too: its link reads "… (deleted)"). */
    const fdsUnder = async () => {
      const links = await Promise.all(
        (await fsp.readdir('/proc/self/fd')).map((fd) => fsp.readlink(`/proc/self/fd/${fd}`).catch(() => '')),
      )
      return links.filter((l) => l.startsWith(dir)).length
    }
    const writer = new ObjectStore(dir)
    await writer.load()
    for (const fid of [1, 2]) await writer.write(fid, 0, 0, [pat(10, fid)], 1)
    await writer.close()
    expect(await fdsUnder()).toBe(0)
    const store = new ObjectStore(dir)
    await store.load()
    try {
      const bufs = [0, 1, 2].map(() => Buffer.alloc(10))
      await Promise.all([...bufs.map((b) => store.read(1, 0, 0, b)), store.write(1, 0, 10, [pat(5, 9)], 2)])
      for (const b of bufs) expect(b.equals(pat(10, 1))).toBe(true)
      expect(await fdsUnder()).toBe(1)
      // A destroy that arrives while a read is opening the object closes what that open gives.
      await Promise.all([store.read(2, 0, 0, Buffer.alloc(10)), store.destroy(2)])
      expect(await fdsUnder()).toBe(1)
    } finally {
      await store.close()
    }
    expect(await fdsUnder()).toBe(0)
  })

  it('a checkpoint has synced every object written before it, also those that reads evict while it syncs', async () => {
    const dir = await tempDir('lp-ost')
    const store = new ObjectStore(dir)
    await store.load()
    const probe = await fsp.open(dir, 'r')
    const proto = Object.getPrototypeOf(probe) as fsp.FileHandle
    await probe.close()
    const realSync = proto.sync
    /** Files whose sync has completed. */
    const synced = new Set<string>()
    let checkpoint = false
    let evicting: Promise<unknown> | undefined
    const spy = vi.spyOn(proto, 'sync').mockImplementation(async function (this: fsp.FileHandle) {
      // Read at once: an await here would let a close slip in before the real sync.
      const file = readlinkSync(`/proc/self/fd/${this.fd}`)
      if (checkpoint && !evicting) {
        // The checkpoint's first sync: meanwhile, reads of 64 other objects evict every open one.
        const buf = Buffer.alloc(10)
        evicting = Promise.all(Array.from({ length: 64 }, (_, i) => store.read(101 + i, 0, 0, buf)))
        await evicting
      } else if (evicting && /^\d+\.\d+$/.test(path.basename(file))) {
        // The evicted objects sync on a slow disk: the checkpoint must still wait for them.
        await new Promise((resolve) => setTimeout(resolve, 50))
      }
      await realSync.call(this)
      synced.add(path.basename(file))
    })
    try {
      // Objects 101..164 on disk, then 1..64 written: the cache (64) holds those, all dirty.
      for (let fid = 101; fid <= 164; fid++) await store.write(fid, 0, 0, [pat(10, fid)], 1)
      await store.syncAll()
      for (let fid = 1; fid <= 64; fid++) await store.write(fid, 0, 0, [pat(10, fid)], 2)
      synced.clear()
      checkpoint = true
      await store.syncAll()
      expect(evicting).toBeDefined()
      expect(Array.from({ length: 64 }, (_, i) => i + 1).filter((fid) => !synced.has(`${fid}.0`))).toEqual([])
    } finally {
      spy.mockRestore()
      await store.close()
    }
  })

  it('applies the extreme times the protocol admits to an object file', async () => {
    const store = new ObjectStore(await tempDir('lp-ost'))
    await store.load()
    try {
      for (const mtime of [MAX_TIME_MS, -MAX_TIME_MS]) {
        await store.write(1, 0, 0, [pat(10, 1)], mtime)
        await store.setMtime(1, 0, mtime)
        await store.truncate(1, 0, 5, mtime)
      }
      await store.syncAll()
    } finally {
      await store.close()
    }
  })

  it('reads fold every uncommitted write: overlapping, sparse, partial ranges', async () => {
    const o = await setup()
    const m = new Model()
    for (const [off, data] of [
      [0, pat(100, 1)],
      [50, pat(100, 2)],
      [1000, pat(10, 3)],
      [20, pat(5, 4)],
    ] as const) {
      o.write(7, 0, off, data)
      m.write(off, data)
    }
    expect(Buffer.compare(await o.read(7, 0), m.buf)).toBe(0)
    expect((await o.read(7, 0)).length).toBe(1010)
    // A hole reads as zeros; a range across writes and holes is exact.
    expect(Buffer.compare(await o.read(7, 0, 140, 30), m.buf.subarray(140, 170))).toBe(0)
    expect((await o.read(7, 0, 500, 10)).equals(Buffer.alloc(10))).toBe(true)
    // Past the end: short, then nothing.
    expect((await o.read(7, 0, 1005, 100)).length).toBe(5)
    expect((await o.read(7, 0, 5000, 100)).length).toBe(0)
    // Another stripe of the same file is another object.
    expect((await o.read(7, 1)).length).toBe(0)
    expect(await o.attrs([7, 0], [7, 1])).toEqual([{ size: 1010, blocks: 2, mtime: expect.any(Number) }, null])
  })

  it('a punch that shrinks, then writes that grow again, read zeros in between', async () => {
    const o = await setup()
    const m = new Model()
    o.write(1, 0, 0, 'x'.repeat(100))
    m.write(0, 'x'.repeat(100))
    o.punch(1, 0, 10)
    m.punch(10)
    expect((await o.read(1, 0)).toString()).toBe('x'.repeat(10))
    o.write(1, 0, 50, 'y'.repeat(10))
    m.write(50, 'y'.repeat(10))
    expect(Buffer.compare(await o.read(1, 0), m.buf)).toBe(0)
    expect((await o.read(1, 0, 10, 40)).equals(Buffer.alloc(40))).toBe(true)
    // A punch can grow an object too: zeros.
    o.punch(1, 0, 200)
    m.punch(200)
    expect(Buffer.compare(await o.read(1, 0), m.buf)).toBe(0)
    expect((await o.attrs([1, 0]))[0]!.size).toBe(200)
    // The same once the file holds the old bytes and only the punch is pending.
    await o.commit()
    o.punch(1, 0, 5)
    o.write(1, 0, 60, 'z')
    m.punch(5)
    m.write(60, 'z')
    expect(Buffer.compare(await o.read(1, 0), m.buf)).toBe(0)
    await o.commit()
    expect(Buffer.compare(await o.read(1, 0), m.buf)).toBe(0)
  })

  it('appends at the current end of the object', async () => {
    const o = await setup()
    expect(o.write(2, 0, 0, 'abc', true)).toMatchObject({ offset: 0, size: 3 })
    expect(o.write(2, 0, 0, 'def', true)).toMatchObject({ offset: 3, size: 6 })
    await o.commit()
    expect(o.write(2, 0, 999, 'g', true)).toMatchObject({ offset: 6, size: 7 })
    expect((await o.read(2, 0)).toString()).toBe('abcdefg')
  })

  it('refuses a write past the maximum object size, with no effect', async () => {
    const o = await setup()
    expect(() => o.write(3, 0, MAX_FILE_SIZE - 1, 'ab')).toThrow(LpError)
    expect(o.redo).toEqual([])
    expect(await o.attrs([3, 0])).toEqual([null])
  })

  it('puts each niobuf of a scattered write at its offset, one redo record each, the same after the commit', async () => {
    const o = await setup()
    const m = new Model()
    const frags = [
      { offset: 4096, length: 4096 },
      { offset: 8192, length: 100 },
      { offset: 65536, length: 4096 },
    ]
    const bulk = pat(8292, 9)
    expect(o.apply('ost_write', { fid: 4, stripe: 0, offset: 4096, niobufs: frags }, bulk)).toMatchObject({ offset: 4096, size: 69632 })
    let at = 0
    for (const f of frags) m.write(f.offset, bulk.subarray(at, (at += f.length)))
    expect(o.redo.map((r) => r.rec)).toEqual(frags.map((f) => expect.objectContaining({ k: 'w', fid: 4, stripe: 0, off: f.offset })))
    expect(Buffer.compare(await o.read(4, 0), m.buf)).toBe(0)
    await o.commit()
    expect(Buffer.compare(await o.read(4, 0), m.buf)).toBe(0)
    // niobufs that do not add up to the bulk are refused, with no effect.
    expect(() => o.apply('ost_write', { fid: 4, stripe: 0, offset: 0, niobufs: [{ offset: 0, length: 10 }] }, pat(11, 1))).toThrow(/niobufs/)
    expect(o.redo).toEqual([])
    expect(Buffer.compare(await o.read(4, 0), m.buf)).toBe(0)
  })

  // (Changed with issue 15: a write after a destroy used to re-create the object; it is refused now.)
  it('destroy removes every stripe, committed or not; a later write or punch is refused and creates nothing', async () => {
    const o = await setup()
    o.write(5, 0, 0, 'committed')
    await o.commit()
    o.write(5, 1, 0, 'pending')
    o.write(6, 0, 0, 'other file')
    expect(await o.objects()).toBe(3)
    o.destroy(5)
    expect(await o.attrs([5, 0], [5, 1], [6, 0])).toEqual([null, null, expect.objectContaining({ size: 10 })])
    expect((await o.read(5, 0)).length).toBe(0)
    expect(await o.objects()).toBe(1)
    const redone = o.redo.length
    expect(() => o.write(5, 0, 4, 'new')).toThrow(expect.objectContaining({ code: 'ENOENT' }))
    expect(() => o.punch(5, 2, 100)).toThrow(expect.objectContaining({ code: 'ENOENT' }))
    expect(o.redo.length).toBe(redone)
    await o.commit()
    expect((await o.read(5, 0)).length).toBe(0)
    expect(await o.attrs([5, 0], [5, 2])).toEqual([null, null])
    expect(() => o.write(5, 0, 4, 'new')).toThrow(LpError)
    expect(await o.objects()).toBe(1)
    // Only the live object has a file.
    const files: string[] = []
    for (const d of await fsp.readdir(path.join(o.root, 'O'))) files.push(...(await fsp.readdir(path.join(o.root, 'O', d))))
    expect(files.sort()).toEqual(['6.0'])
  })

  it('destroys the objects of several files in one request, each as its own redo record', async () => {
    const o = await setup()
    o.write(5, 0, 0, 'a')
    o.write(6, 1, 0, 'b')
    o.write(7, 0, 0, 'c')
    await o.commit()
    o.destroy(5, 6, 42)
    expect(o.redo.map((r) => r.rec)).toEqual([5, 6, 42].map((fid) => ({ k: 'd', fid, t: o.lastTransno() })))
    await o.commit()
    expect(await o.attrs([5, 0], [6, 1], [7, 0])).toEqual([null, null, expect.objectContaining({ size: 1 })])
    expect(await o.objects()).toBe(1)
  })

  it('reads are the same before, during and after the commits that move data to files, and after a reload', async () => {
    const o = await setup()
    const models = new Map<string, Model>()
    let seed = 11
    const rnd = (n: number) => (seed = (seed * 1103515245 + 12345) % 2 ** 31) % n
    // Three files; a destroyed one is replaced by a new FID (a destroyed FID takes no more writes).
    const files = [1, 2, 3]
    for (let i = 0; i < 300; i++) {
      const slot = rnd(3)
      const fid = files[slot]!
      const stripe = rnd(2)
      const key = `${fid}.${stripe}`
      const m = models.get(key) ?? new Model()
      models.set(key, m)
      const k = rnd(10)
      if (k === 0) {
        const size = rnd(3000)
        o.punch(fid, stripe, size)
        m.punch(size)
      } else if (k === 1 && i > 100) {
        o.destroy(fid)
        models.set(`${fid}.0`, new Model())
        models.set(`${fid}.1`, new Model())
        files[slot] = Math.max(...files) + 1
      } else {
        const off = rnd(4000)
        const data = pat(1 + rnd(1500), i)
        o.write(fid, stripe, off, data)
        m.write(off, data)
      }
      // Commit a random prefix now and then: part of the history is in files, the rest pending.
      if (rnd(8) === 0) await o.commit(rnd(o.redo.length + 1))
    }
    const check = async (label: string) => {
      for (const [key, m] of models) {
        const [fid, stripe] = key.split('.').map(Number) as [number, number]
        const got = await o.read(fid, stripe)
        expect(Buffer.compare(got, m.buf), `${label}: object ${key}`).toBe(0)
      }
    }
    await check('with pending ops')
    const committed = await o.objects()
    await o.commit()
    await check('all committed')
    expect(await o.objects()).toBe(committed)
    // A fresh backend on the same files (a restart) sees the same.
    const again = await setup(o.root)
    for (const [key, m] of models) {
      const [fid, stripe] = key.split('.').map(Number) as [number, number]
      expect(Buffer.compare(await again.read(fid, stripe), m.buf), `reloaded: object ${key}`).toBe(0)
      const a = (await again.attrs([fid, stripe]))[0]
      if (m.buf.length) expect(a?.size).toBe(m.buf.length)
    }
    expect(await again.objects()).toBe(committed)
  })

  it('journal redo on the files gives the same objects', async () => {
    const o = await setup()
    const journal: Array<{ rec: Record<string, unknown>; data: Buffer }> = []
    const m = new Model()
    // The journal keeps a record's pieces as one run.
    const log = () => journal.push(...o.redo.map((r) => ({ rec: r.rec, data: Buffer.concat(r.data ?? []) })))
    o.write(9, 0, 0, pat(5000, 1))
    m.write(0, pat(5000, 1))
    o.punch(9, 0, 1000)
    m.punch(1000)
    o.write(9, 0, 3000, pat(100, 2))
    m.write(3000, pat(100, 2))
    o.write(8, 0, 0, 'gone')
    o.destroy(8)
    log()
    const fresh = await setup()
    for (const r of journal) await fresh.b.redo(JSON.parse(JSON.stringify(r.rec)) as Record<string, unknown>, r.data)
    expect(Buffer.compare(await fresh.read(9, 0), m.buf)).toBe(0)
    expect(await fresh.attrs([8, 0])).toEqual([null])
    // Redoing over files that already hold all of it (a crash after the commit) changes nothing.
    for (const r of journal) await fresh.b.redo(JSON.parse(JSON.stringify(r.rec)) as Record<string, unknown>, r.data)
    expect(Buffer.compare(await fresh.read(9, 0), m.buf)).toBe(0)
  })

  it('a zero-length write creates the object but does not extend it, before and after a restart', async () => {
    const o = await setup()
    o.write(4, 0, 100, Buffer.alloc(0))
    expect(await o.attrs([4, 0])).toEqual([expect.objectContaining({ size: 0 })])
    o.write(4, 0, 0, 'ab')
    o.write(4, 0, 50, Buffer.alloc(0))
    expect((await o.read(4, 0)).toString()).toBe('ab')
    await o.commit()
    expect((await o.attrs([4, 0]))[0]!.size).toBe(2)
    const again = await setup(o.root)
    expect((await again.attrs([4, 0]))[0]!.size).toBe(2)
    expect((await again.read(4, 0)).toString()).toBe('ab')
  })

  it('many objects at once: reads and commits share the open-file cache without tripping each other', async () => {
    const o = await setup()
    const N = 150 // more than the store keeps open
    const data = (fid: number) => pat(4096 + fid, fid)
    for (let fid = 1; fid <= N; fid++) o.write(fid, 0, 0, data(fid))
    await o.commit()
    for (let fid = 1; fid <= N; fid++) o.write(fid, 0, 100, 'changed')
    // Commit (writes to the files) while every object is read, again and again.
    const expected = (fid: number) => {
      const b = Buffer.from(data(fid))
      b.write('changed', 100)
      return b
    }
    const reads = [...Array(3)].flatMap(() => [...Array(N).keys()].map(async (i) => Buffer.compare(await o.read(i + 1, 0), expected(i + 1))))
    const [results] = await Promise.all([Promise.all(reads), o.commit()])
    expect(results.every((r) => r === 0)).toBe(true)
    for (let fid = 1; fid <= N; fid++) expect(Buffer.compare(await o.read(fid, 0), expected(fid))).toBe(0)
    const again = await setup(o.root)
    for (let fid = 1; fid <= N; fid++) expect(Buffer.compare(await again.read(fid, 0), expected(fid))).toBe(0)
  })

  it('counts objects for statfs', async () => {
    const o = await setup()
    expect(await o.objects()).toBe(0)
    for (let fid = 1; fid <= 4; fid++) o.write(fid, 0, 0, 'x')
    o.write(1, 1, 0, 'x')
    expect(await o.objects()).toBe(5)
    await o.commit()
    expect(await o.objects()).toBe(5)
    o.destroy(1)
    o.destroy(77)
    expect(await o.objects()).toBe(3)
    await o.commit()
    expect(await o.objects()).toBe(3)
  })

  it('versions: each change sets its transno on the object; replies carry what the request found', async () => {
    const o = await setup()
    expect(o.write(3, 0, 0, 'a')).toMatchObject({ pre_versions: { '3.0': 0 } })
    const w = o.lastTransno()
    expect(o.write(3, 0, 1, 'b')).toMatchObject({ pre_versions: { '3.0': w } })
    expect(o.punch(3, 0, 1)).toEqual({ pre_versions: { '3.0': w + 1 } })
    expect(o.apply('ost_setattr', { fid: 3, stripe: 0, mtime: 5 })).toEqual({ pre_versions: { '3.0': w + 2 } })
    // A setattr on an object not written yet changes nothing, its version included.
    expect(o.apply('ost_setattr', { fid: 3, stripe: 1, mtime: 5 })).toEqual({ pre_versions: { '3.1': 0 } })
    expect(o.write(3, 1, 0, 'c')).toMatchObject({ pre_versions: { '3.1': 0 } })
    expect(o.destroy(3, 9)).toEqual({ pre_versions: { '3.0': w + 3, '3.1': w + 5 } })
    const d = o.lastTransno()
    const { entries } = await o.list()
    expect(entries).toEqual([{ fid: 3, objects: [], destroyed: d }, { fid: 9, objects: [], destroyed: d }])
  })

  it('a replay whose versions do not match fails with EOVERFLOW and changes nothing; a matching one executes', async () => {
    const o = await setup()
    const first = o.write(7, 0, 0, 'one')
    const t1 = o.lastTransno()
    o.write(7, 0, 0, 'TWO') // another client's change since
    await o.commit()
    const before = o.redo.length
    // Replaying the first write now: it found version 0, the object is at t1 + 1.
    expect(() => o.apply('ost_write', { fid: 7, stripe: 0, offset: 0 }, Buffer.from('one'), { transno: t1, reply: first })).toThrow(
      expect.objectContaining({ code: 'EOVERFLOW', message: `OST: version mismatch on 7.0: replay expects 0, object has ${t1 + 1}` }),
    )
    expect(() => o.apply('ost_punch', { fid: 7, stripe: 0, size: 0 }, undefined, { transno: t1, reply: { pre_versions: { '7.0': 3 } } })).toThrow(
      expect.objectContaining({ code: 'EOVERFLOW' }),
    )
    expect(() => o.apply('ost_destroy', { fids: [8, 7] }, undefined, { transno: t1, reply: { pre_versions: {} } })).toThrow(
      expect.objectContaining({ code: 'EOVERFLOW' }),
    )
    expect(o.redo.length).toBe(before)
    expect((await o.read(7, 0)).toString()).toBe('TWO')
    expect(await o.list()).toEqual({ entries: [{ fid: 7, objects: [{ stripe: 0, size: 3, version: t1 + 1 }] }], next: null })
    // The versions it expects are there: it executes, and its object takes its (original) transno.
    o.apply('ost_write', { fid: 7, stripe: 0, offset: 1 }, Buffer.from('x'), { transno: 500, reply: { pre_versions: { '7.0': t1 + 1 } } })
    expect((await o.read(7, 0)).toString()).toBe('TxO')
    expect((await o.list()).entries[0]!.objects[0]!.version).toBe(500)
    // A forged reply is refused as such.
    expect(() => o.apply('ost_write', { fid: 7, stripe: 0, offset: 1 }, Buffer.from('x'), { transno: 501, reply: { pre_versions: { '7.0': -1 } } })).toThrow(
      expect.objectContaining({ code: 'EPROTO' }),
    )
  })

  it('an append replay lands at the offset of its original reply, not at the current end', async () => {
    const o = await setup()
    o.write(2, 0, 0, 'abc')
    expect(o.write(2, 0, 0, 'def', true)).toMatchObject({ offset: 3, pre_versions: { '2.0': o.lastTransno() - 1 } })
    // Another run: the append went to 3 when the object was 'abc'; the same bytes are there
    // now with the same version, but 6 long (a bigger write with the same version cannot be
    // told apart by VBR): the replay must use its recorded offset.
    const r = await setup()
    r.write(2, 0, 0, 'abcxyz')
    const t = r.lastTransno()
    expect(r.apply('ost_write', { fid: 2, stripe: 0, offset: 0, append: true }, Buffer.from('DEF'), { transno: t + 1, reply: { offset: 3, size: 6, pre_versions: { '2.0': t } } })).toMatchObject({
      offset: 3,
      size: 6,
    })
    expect((await r.read(2, 0)).toString()).toBe('abcDEF')
    // Not a replay: at the current end.
    expect(r.write(2, 0, 0, 'G', true)).toMatchObject({ offset: 6, size: 7 })
  })

  it('destroyed FIDs and versions survive a restart, from the checkpointed index and from journal redo', async () => {
    const o = await setup()
    o.write(11, 0, 0, 'kept')
    o.write(12, 1, 0, 'gone')
    o.destroy(12, 13)
    const v11 = o.lastTransno() - 2
    await o.commit()
    // A checkpoint: the index is cut and persisted, and CHECKPOINT would name what persist returned.
    const ref = await o.b.persist(o.b.snapshot(), o.lastTransno())
    await o.b.afterCheckpoint([ref])
    o.write(11, 0, 4, '!')
    o.destroy(14)
    const journal = o.redo.splice(0).map((r) => ({ rec: JSON.parse(JSON.stringify(r.rec)) as Record<string, unknown>, data: Buffer.concat(r.data ?? []) }))
    // A crash: the checkpoint's files and index, then the journal redone over them.
    const again = new OstBackend(o.root)
    open.push(again)
    await again.load(JSON.parse(JSON.stringify(ref)))
    for (const j of journal) await again.redo(j.rec, j.data)
    const ctx = { client: 'c2', bulk: chunked(Buffer.from('x')), now: 1, transno: 900 }
    for (const fid of [12, 13, 14]) expect(() => again.apply('ost_write', { fid, stripe: 0, offset: 0 }, ctx)).toThrow(expect.objectContaining({ code: 'ENOENT' }))
    const { entries } = (await again.query('ost_list', { after: 10, count: 10 }, Q)).body as { entries: OstListEntry[] }
    expect(entries.map((e) => [e.fid, e.objects.map((x) => x.version), e.destroyed])).toEqual([
      [11, [v11 + 3], undefined],
      [12, [], v11 + 2],
      [13, [], v11 + 2],
      [14, [], v11 + 4],
    ])
    // Only the checkpoint's index is kept; a damaged one stops the start with its name.
    const idx = (await fsp.readdir(o.root)).filter((f) => f.startsWith('index-'))
    expect(idx).toEqual([(ref as { index: string }).index])
    await fsp.writeFile(path.join(o.root, idx[0]!), '{"versions": 7}')
    await expect(new OstBackend(o.root).load(ref)).rejects.toThrow(idx[0]!)
  })

  it('lists objects in FID order, paged by a cursor', async () => {
    const o = await setup()
    for (const fid of [40, 3, 17, 9]) o.write(fid, fid % 2, 0, 'x')
    o.write(17, 5, 10, 'yy')
    await o.commit()
    const p1 = await o.list(0, 2)
    expect(p1.entries.map((e) => e.fid)).toEqual([3, 9])
    expect(p1.next).toBe(9)
    const p2 = await o.list(p1.next!, 2)
    expect(p2.entries).toEqual([
      { fid: 17, objects: [{ stripe: 1, size: 1, version: expect.any(Number) }, { stripe: 5, size: 12, version: o.lastTransno() }] },
      { fid: 40, objects: [{ stripe: 0, size: 1, version: expect.any(Number) }] },
    ])
    expect(p2.next).toBe(null)
  })

  it(`remembers the newest ${MAX_TOMBSTONES} destroyed FIDs, no more`, async () => {
    const o = await setup()
    const N = MAX_TOMBSTONES + 5
    for (let fid = 1; fid <= N; fid += 1024) o.destroy(...Array.from({ length: Math.min(1024, N - fid + 1) }, (_, i) => fid + i))
    // The five oldest are forgotten (a write would make an orphan for the cleanup); the rest refuse.
    for (let fid = 1; fid <= 5; fid++) o.write(fid, 0, 0, 'late')
    expect(() => o.write(6, 0, 0, 'late')).toThrow(expect.objectContaining({ code: 'ENOENT' }))
    expect(() => o.write(N, 0, 0, 'late')).toThrow(expect.objectContaining({ code: 'ENOENT' }))
    // Through a checkpoint and a restart they keep the destroys' order: the next destroy forgets FID 6.
    await o.commit()
    const ref = await o.b.persist(o.b.snapshot(), o.lastTransno())
    await o.b.afterCheckpoint([ref])
    const again = new OstBackend(o.root)
    open.push(again)
    await again.load(JSON.parse(JSON.stringify(ref)))
    const ctx = (transno: number) => ({ client: 'c2', bulk: chunked(Buffer.from('x')), now: 1, transno })
    again.apply('ost_destroy', { fids: [N + 1] }, { ...ctx(900_000), bulk: chunked(Buffer.alloc(0)) })
    expect(() => again.apply('ost_write', { fid: 6, stripe: 0, offset: 0 }, ctx(900_001))).not.toThrow()
    for (const fid of [7, N, N + 1]) expect(() => again.apply('ost_write', { fid, stripe: 0, offset: 0 }, ctx(900_002))).toThrow(expect.objectContaining({ code: 'ENOENT' }))
  })
})
