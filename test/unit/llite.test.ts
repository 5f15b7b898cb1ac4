import pino from 'pino'
import { describe, expect, it } from 'vitest'
import { ManualClock } from '../../src/common/clock.js'
import { O_EXCL, O_RDONLY, O_TRUNC, O_WRONLY } from '../../src/llite/file.js'
import { Llite, READ_ON_OPEN } from '../../src/llite/llite.js'
import type { Glimpse, Lov } from '../../src/lov/lov.js'
import type { Mdc } from '../../src/mdc/mdc.js'
import { LpError } from '../../src/protocol/errno.js'
import type { Layout, MdtAttr } from '../../src/protocol/ops.js'

/** llite driven with neither FUSE nor network: fake mdc and lov, a manual clock. */
const layout: Layout = { stripe_size: 1 << 20, osts: [1] }
const file = (fid: number, l = layout): MdtAttr => ({ fid, type: 'reg', mode: 0o644, uid: 0, gid: 0, nlink: 1, atime: 0, mtime: 0, ctime: 0, size: 0, layout: l })

function lliteOver(mdc: Mdc, lov: Lov, clock = new ManualClock()): Llite {
  return new Llite({ mdc, lov, clock, log: pino({ level: 'silent' }), attrTimeoutMs: 1000, uid: 0, gid: 0, readAheadChunk: 1 << 20, maxReadAheadPerFile: 1 << 24, maxReadAhead: 1 << 30 })
}

/** An MDT whose lookups answer only when the test says so, and OSTs that count glimpses. */
function rig() {
  const clock = new ManualClock()
  const names = new Map<string, MdtAttr>()
  const lookups: Array<() => void> = []
  const glimpses: number[] = []
  const sizes = new Map<number, number>()
  const mdc = {
    lookup: (_parent: number, name: string) =>
      new Promise<MdtAttr>((resolve, reject) =>
        lookups.push(() => {
          const a = names.get(name)
          if (a) resolve(a)
          else reject(new Error('ENOENT'))
        }),
      ),
  } as unknown as Mdc
  const lov = {
    glimpse: async (fid: number): Promise<Glimpse> => {
      glimpses.push(fid)
      return { size: sizes.get(fid) ?? 0, blocks: 0, mtime: 0 }
    },
    cachedSize: () => 0,
    lost: () => false,
  } as unknown as Lov
  const ll = lliteOver(mdc, lov, clock)
  /** Answer the pending MDT lookup, then let the stat finish. */
  const answer = async <T>(p: Promise<T>): Promise<T> => {
    await clock.advance(0)
    lookups.shift()!()
    return p
  }
  return { clock, names, glimpses, sizes, ll, answer }
}

describe('lookup and stat of a name whose cached attributes expired', () => {
  it('glimpses the file the name last named alongside the MDT lookup, and keeps that glimpse when the MDT confirms it', async () => {
    const r = rig()
    r.names.set('f', file(10))
    r.sizes.set(10, 4096)
    expect((await r.answer(r.ll.lookupStat(1, 'f'))).st.size).toBe(4096)
    expect(r.glimpses).toEqual([10]) // the first time, after the lookup: nothing was known
    await r.clock.advance(1001)
    r.sizes.set(10, 8192)
    const p = r.ll.lookupStat(1, 'f')
    await r.clock.advance(0)
    expect(r.glimpses).toEqual([10, 10]) // out before the MDT answered
    expect((await r.answer(p)).st.size).toBe(8192)
    expect(r.glimpses).toEqual([10, 10])
  })

  it('discards the early glimpse when the name now names another file or layout', async () => {
    const r = rig()
    r.names.set('f', file(10))
    await r.answer(r.ll.lookupStat(1, 'f'))
    await r.clock.advance(1001)
    r.names.set('f', file(11)) // replaced by another client meanwhile
    r.sizes.set(11, 100)
    const got = await r.answer(r.ll.lookupStat(1, 'f'))
    expect([got.attr.fid, got.st.size]).toEqual([11, 100])
    expect(r.glimpses).toEqual([10, 10, 11])
    await r.clock.advance(1001)
    r.names.set('f', file(11, { stripe_size: 1 << 20, osts: [2] }))
    await r.answer(r.ll.lookupStat(1, 'f'))
    expect(r.glimpses).toEqual([10, 10, 11, 11, 11])
  })

  it('sends no glimpse of its own while the attributes are fresh', async () => {
    const r = rig()
    r.names.set('f', file(10))
    await r.answer(r.ll.lookupStat(1, 'f'))
    const again = await r.ll.lookupStat(1, 'f')
    expect(again.st.size).toBe(0)
    expect(r.glimpses).toEqual([10])
  })
})

describe('open(O_CREAT) of a name another client made meanwhile', () => {
  /** The MDT already has `f` (uid 1000, mode 0644): the create fails with EEXIST. */
  function exists() {
    const f = { ...file(10), uid: 1000, gid: 1000 }
    const opened: number[] = []
    const dir: MdtAttr = { ...file(1), type: 'dir', mode: 0o777, layout: undefined, dir_layout: { stripe_count: 1, stripe_size: 1 << 20, stripe_offset: -1 } }
    const mdc = {
      getattr: async (fid: number) => (fid === 10 ? f : dir),
      create: async () => {
        throw new LpError('EEXIST', 'f exists')
      },
      lookup: async () => f,
      open: async (fid: number) => {
        opened.push(fid)
        return { attr: f, handle: '00000000000000aa' }
      },
    } as unknown as Mdc
    const lov = { chooseLayout: () => layout, glimpse: async () => ({ size: 0, blocks: 0, mtime: 0 }), cachedSize: () => 0, lost: () => false } as unknown as Lov
    return { ll: lliteOver(mdc, lov), opened }
  }

  it('opens the existing file, when its mode lets the caller', async () => {
    const r = exists()
    const c = await r.ll.create(1, 'f', 0o600, O_RDONLY, { uid: 2000, gid: 2000 })
    expect([c.attr.fid, r.opened]).toEqual([10, [10]])
  })

  it('refuses with EACCES what the kernel would have refused had it known the file (write by another user, O_TRUNC)', async () => {
    const r = exists()
    await expect(r.ll.create(1, 'f', 0o600, 1, { uid: 2000, gid: 2000 })).rejects.toMatchObject({ code: 'EACCES' })
    await expect(r.ll.create(1, 'f', 0o600, O_RDONLY | O_TRUNC, { uid: 2000, gid: 2000 })).rejects.toMatchObject({ code: 'EACCES' })
    expect(r.opened).toEqual([])
    await r.ll.create(1, 'f', 0o600, 1, { uid: 1000, gid: 1000 })
    expect(r.opened).toEqual([10])
  })

  it('fails with EEXIST under O_EXCL', async () => {
    const r = exists()
    await expect(r.ll.create(1, 'f', 0o600, O_EXCL | 1, { uid: 1000, gid: 1000 })).rejects.toMatchObject({ code: 'EEXIST' })
    expect(r.opened).toEqual([])
  })
})

describe("a file's open handles, for a capability's renewal", () => {
  it('names a writable open of the file first, a read-only one else, none once all are closed', async () => {
    const f = file(10)
    let next = 0xa0
    const mdc = {
      getattr: async () => f,
      open: async () => ({ attr: f, handle: `00000000000000${(next++).toString(16)}` }),
      close: () => undefined,
    } as unknown as Mdc
    const lov = { glimpse: async () => ({ size: 0, blocks: 0, mtime: 0 }), readHead: async () => ({ glimpse: { size: 0, blocks: 0, mtime: 0 }, data: [] }), flush: async () => undefined, takeError: () => undefined, cachedSize: () => 0, lost: () => false } as unknown as Lov
    const ll = lliteOver(mdc, lov)
    expect(ll.openHandle(10)).toBeUndefined()
    const ro = await ll.open(10, O_RDONLY)
    const wr = await ll.open(10, O_WRONLY)
    const ro2 = await ll.open(10, O_RDONLY)
    expect(ll.openHandle(10)).toBe('00000000000000a1')
    expect(ll.openHandle(11)).toBeUndefined()
    await ll.release(wr)
    expect(ll.openHandle(10)).toBe('00000000000000a0')
    await ll.release(ro)
    await ll.release(ro2)
    expect(ll.openHandle(10)).toBeUndefined()
  })
})

describe('an OST import invalidated (issue 15)', () => {
  /** Files 10 (on OST 1) and 11 (on OST 2), 4 MiB each; reads of OST 1 fail once it is lost. */
  function rig() {
    const clock = new ManualClock()
    const files = new Map([10, 11].map((fid) => [fid, file(fid, { stripe_size: 1 << 20, osts: [fid - 9] })]))
    const reads: Array<[number, number]> = []
    const glimpses: number[] = []
    let lost = false
    const mdc = {
      getattr: async (fid: number) => files.get(fid)!,
      open: async (fid: number) => ({ attr: files.get(fid)!, handle: '00000000000000aa' }),
      close: async () => undefined,
    } as unknown as Mdc
    const lov = {
      cachedSize: () => 0,
      flush: async () => undefined,
      takeError: () => undefined,
      lost: (l: Layout) => lost && l.osts.includes(1),
      glimpse: async (fid: number): Promise<Glimpse> => {
        glimpses.push(fid)
        // A lost OST's stripes count as empty (decided question 3).
        return { size: lost && fid === 10 ? 0 : 4 << 20, blocks: 0, mtime: 0 }
      },
      read: async (fid: number, _l: Layout, off: number, len: number) => {
        if (lost && fid === 10) throw new LpError('ESHUTDOWN', 'spfs-OST0001: import is invalid')
        reads.push([fid, off])
        return { data: [Buffer.alloc(len, fid)], complete: true }
      },
    } as unknown as Lov
    const ll = lliteOver(mdc, lov, clock)
    return { ll, reads, glimpses, lose: () => (lost = true), recover: () => (lost = false) }
  }

  it('drops the read-ahead and glimpsed sizes of files with a stripe there; their reads fail instead of reading nothing', async () => {
    const r = rig()
    const fd = await r.ll.open(10, O_RDONLY)
    const other = await r.ll.open(11, O_RDONLY)
    await r.ll.stat(10)
    await r.ll.stat(11)
    const K64 = 64 * 1024
    for (const f of [fd, other]) for (let off = 0; off < 3 * K64; off += K64) expect(Buffer.concat(await r.ll.read(f, off, K64))).toHaveLength(K64)
    // The window runs ahead of both readers.
    expect(r.reads.filter(([fid, off]) => fid === 10 && off >= 1 << 20).length).toBeGreaterThan(0)
    expect(r.ll.uncached(fd)).toBe(false)

    r.lose()
    r.ll.objectsLost(1)
    // Bytes already read ahead are not served any more.
    await expect(r.ll.read(fd, 3 * K64, K64)).rejects.toMatchObject({ code: 'ESHUTDOWN' })
    // The size is glimpsed again (0: the stripe counts as empty), yet the read still asks the OST.
    expect((await r.ll.stat(10)).size).toBe(0)
    expect(r.glimpses.filter((f) => f === 10)).toHaveLength(2)
    await expect(r.ll.read(fd, 0, K64)).rejects.toMatchObject({ code: 'ESHUTDOWN' })
    expect(r.ll.uncached(fd)).toBe(true)
    // The other OST's file keeps its window and its size.
    const before = r.reads.length
    expect(Buffer.concat(await r.ll.read(other, 3 * K64, K64))).toHaveLength(K64)
    expect(r.reads.length).toBe(before)
    expect(r.glimpses.filter((f) => f === 11)).toHaveLength(1)
    expect(r.ll.uncached(other)).toBe(false)
    // Back (the target answers again): what was read ahead before the loss is not served, the OST is asked.
    r.recover()
    const asked = r.reads.filter(([fid]) => fid === 10).length
    expect(Buffer.concat(await r.ll.read(fd, 3 * K64, K64))).toHaveLength(K64)
    expect(r.reads.filter(([fid]) => fid === 10).length).toBeGreaterThan(asked)
  })

  it('reports the open files with a stripe there, once each, so the pages cached above llite go too', async () => {
    const r = rig()
    const told: number[][] = []
    r.ll.onDataLost((fids) => told.push(fids))
    await r.ll.open(10, O_RDONLY)
    await r.ll.open(10, O_RDONLY)
    const other = await r.ll.open(11, O_RDONLY)
    r.ll.objectsLost(1)
    expect(told).toEqual([[10]])
    // A file no longer open is not reported: its next open starts without the kernel's pages.
    await r.ll.release(other)
    r.ll.objectsLost(2)
    // No file open on the OST: nobody is told.
    r.ll.objectsLost(3)
    expect(told).toEqual([[10]])
  })
})

describe('unlink and rename name the inode they act on', () => {
  /** An MDT where `f` names FID 20 now, though this client last saw it name 10. */
  function replaced() {
    const sent: Array<{ op: string; fid?: number; newFid?: number }> = []
    const now = new Map([['f', 20], ['g', 30]])
    const check = (name: string, fid: number | undefined) => {
      if (fid !== undefined && now.get(name) !== fid) throw new LpError('ESTALE', `'${name}' names another inode`)
    }
    const mdc = {
      lookup: async (_p: number, name: string) => file(now.get(name) ?? 0),
      unlink: async (_p: number, name: string, _dir: boolean, _t: number, fid?: number) => {
        sent.push({ op: 'unlink', fid })
        check(name, fid)
        return { fid: now.get(name)!, nlink: 0, pre_versions: {}, dirs: [], was: [] }
      },
      rename: async (_p: number, name: string, _np: number, newName: string, _t: number, o: { fid?: number; newFid?: number }) => {
        sent.push({ op: 'rename', fid: o.fid, newFid: o.newFid })
        check(name, o.fid)
        check(newName, o.newFid)
        return { fid: now.get(name)!, pre_versions: {}, dirs: [], was: [] }
      },
    } as unknown as Mdc
    const ll = lliteOver(mdc, { cachedSize: () => 0 } as unknown as Lov)
    ll.cache.setEntry(1, 'f', 10)
    ll.cache.setEntry(1, 'g', 31)
    return { ll, sent }
  }

  it('sends the FID it knows; on ESTALE it forgets it and acts on what the name names now', async () => {
    const r = replaced()
    expect(await r.ll.unlink(1, 'f')).toBe(20)
    expect(r.sent).toEqual([
      { op: 'unlink', fid: 10 },
      { op: 'unlink', fid: undefined },
    ])
    expect(r.ll.cache.entry(1, 'f')).toBeUndefined()
  })

  it('rename names the moved inode and the replaced one, and drops both guesses on ESTALE', async () => {
    const r = replaced()
    r.ll.cache.setEntry(1, 'f', 20)
    await r.ll.rename(1, 'f', 1, 'g')
    expect(r.sent).toEqual([
      { op: 'rename', fid: 20, newFid: 31 },
      { op: 'rename', fid: undefined, newFid: undefined },
    ])
  })
})

describe('special files and name limits (issue 20)', () => {
  /** An MDT that records what it is asked to create and answers with the attributes it would make. */
  function mdtRecording() {
    const calls: Array<{ op: string; args: Record<string, unknown> }> = []
    const dir: MdtAttr = { fid: 1, type: 'dir', mode: 0o755, uid: 0, gid: 0, nlink: 2, atime: 0, mtime: 0, ctime: 0, size: 4096, change: 0 }
    let next = 10
    const mdc = {
      getattr: async () => dir,
      lookup: async (_p: number, name: string) => {
        calls.push({ op: 'lookup', args: { name } })
        throw new LpError('ENOENT')
      },
      create: async (a: Record<string, unknown>) => {
        calls.push({ op: 'create', args: a })
        const attr = { ...file(next++), type: a.type, layout: undefined, rdev: a.rdev } as MdtAttr
        return { attr, pre_versions: {}, dirs: [dir], was: [0] }
      },
      link: async (...a: unknown[]) => calls.push({ op: 'link', args: { a } }),
      rename: async (...a: unknown[]) => calls.push({ op: 'rename', args: { a } }),
    } as unknown as Mdc
    return { calls, ll: lliteOver(mdc, {} as Lov) }
  }

  it('mknod makes FIFOs, devices and sockets by their S_IFMT bits, sending a device number for devices only', async () => {
    const m = mdtRecording()
    const fifo = await m.ll.mknod(1, 'p', 0o010644, 0x103)
    const chr = await m.ll.mknod(1, 'c', 0o020600, 0x103)
    const blk = await m.ll.mknod(1, 'b', 0o060600, 0x801)
    const sock = await m.ll.mknod(1, 's', 0o140755, 0)
    expect([fifo.type, chr.type, blk.type, sock.type]).toEqual(['fifo', 'chr', 'blk', 'sock'])
    expect(m.calls.map((c) => [c.args.type, c.args.mode, c.args.rdev])).toEqual([
      ['fifo', 0o644, undefined],
      ['chr', 0o600, 0x103],
      ['blk', 0o600, 0x801],
      ['sock', 0o755, undefined],
    ])
    expect((await m.ll.statOf(chr)).mode).toBe(0o020644)
    expect((await m.ll.statOf(chr)).rdev).toBe(0x103)
    await expect(m.ll.mknod(1, 'd', 0o040755, 0)).rejects.toMatchObject({ code: 'EINVAL' })
    await expect(m.ll.mknod(1, 'x', 0o170644, 0)).rejects.toMatchObject({ code: 'EINVAL' })
  })

  it('refuses names over 255 bytes (ENAMETOOLONG) and symlink targets over 4095 bytes before asking the MDT', async () => {
    const m = mdtRecording()
    const long = 'é'.repeat(128)
    for (const p of [
      m.ll.lookup(1, long),
      m.ll.mkdir(1, long, 0o755),
      m.ll.mknod(1, long, 0o010644, 0),
      m.ll.link(5, 1, long),
      m.ll.rename(1, 'a', 1, long),
      m.ll.unlink(1, long),
      m.ll.symlink('x'.repeat(4096), 1, 'l'),
    ])
      await expect(p).rejects.toMatchObject({ code: 'ENAMETOOLONG' })
    await expect(m.ll.lookup(1, 'a\uD800')).rejects.toMatchObject({ code: 'EINVAL' })
    expect(m.calls).toEqual([])
    await expect(m.ll.lookup(1, 'é'.repeat(127))).rejects.toMatchObject({ code: 'ENOENT' })
    expect(m.calls).toHaveLength(1)
  })
})

describe('open of a regular file', () => {
  /** An MDT whose opens answer when the test says so; OSTs that count glimpses, reads with the open and other reads. */
  function rig() {
    const clock = new ManualClock()
    const opens: Array<() => void> = []
    const glimpses: number[] = []
    const heads: number[] = []
    const reads: number[] = []
    let size = 4096
    let oldOst = false
    const content = () => Buffer.alloc(size, 7)
    const mdc = {
      getattr: async (fid: number) => file(fid),
      open: (fid: number) => new Promise((resolve) => opens.push(() => resolve({ attr: file(fid), handle: '00000000000000aa' }))),
      close: () => undefined,
    } as unknown as Mdc
    const lov = {
      glimpse: async (fid: number): Promise<Glimpse> => {
        glimpses.push(fid)
        return { size, blocks: 8, mtime: 0 }
      },
      readHead: async (fid: number, _l: Layout, len: number) => {
        heads.push(fid)
        return oldOst ? undefined : { data: [content().subarray(0, len)], glimpse: { size, blocks: 8, mtime: 0 } }
      },
      read: async (fid: number, _l: Layout, off: number, len: number) => {
        reads.push(fid)
        const data = content().subarray(off, off + len)
        return { data: [data, Buffer.alloc(len - data.length)], complete: data.length === len }
      },
      write: async () => undefined,
      takeError: () => undefined,
      cachedSize: () => 0,
      lost: () => false,
    } as unknown as Lov
    const ll = lliteOver(mdc, lov, clock)
    const open = async (fid: number, flags: number, meanwhile?: () => void) => {
      const p = ll.open(fid, flags)
      await clock.advance(0)
      meanwhile?.()
      opens.shift()!()
      return p
    }
    return { ll, glimpses, heads, reads, open, grow: (n: number) => (size = n), old: () => (oldOst = true) }
  }

  it('for reading, reads a small file whole with the open: the stat and the reads after it wait for no RPC', async () => {
    const r = rig()
    const fd = await r.open(10, O_RDONLY, () => expect(r.heads).toEqual([10]))
    expect((await r.ll.stat(10)).size).toBe(4096)
    expect(Buffer.concat(await r.ll.read(fd, 0, 65536))).toEqual(Buffer.alloc(4096, 7))
    expect(Buffer.concat(await r.ll.read(fd, 4000, 4096))).toEqual(Buffer.alloc(96, 7))
    expect(await r.ll.read(fd, 8192, 4096)).toEqual([])
    expect([r.glimpses, r.reads]).toEqual([[], []])
  })

  it("keeps a small file's bytes within the mount's read-ahead budget, and gives them back at close", async () => {
    const r = rig()
    r.ll.readAhead.maxBytes = 6000
    const a = await r.open(10, O_RDONLY)
    expect(r.ll.readAhead.heldBytes).toBe(4096)
    // No room for another: its reads go to the OST.
    const b = await r.open(11, O_RDONLY)
    expect([r.ll.readAhead.heldBytes, r.ll.readAhead.refused]).toEqual([4096, 1])
    expect(Buffer.concat(await r.ll.read(b, 0, 4096))).toEqual(Buffer.alloc(4096, 7))
    expect(r.reads).toEqual([11])
    await r.ll.release(a)
    await r.ll.release(b)
    expect(r.ll.readAhead.heldBytes).toBe(0)
    const c = await r.open(12, O_RDONLY)
    expect(Buffer.concat(await r.ll.read(c, 0, 4096))).toEqual(Buffer.alloc(4096, 7))
    expect([r.reads, r.ll.readAhead.heldBytes]).toEqual([[11], 4096])
  })

  it('reads a larger file as before, and an older OST (no attributes in its read reply) is glimpsed instead', async () => {
    const r = rig()
    r.grow(READ_ON_OPEN + 1)
    const fd = await r.open(10, O_RDONLY)
    expect((await r.ll.stat(10)).size).toBe(READ_ON_OPEN + 1)
    expect(Buffer.concat(await r.ll.read(fd, 0, 4096))).toEqual(Buffer.alloc(4096, 7))
    expect(r.reads).toEqual([10])
    r.old()
    r.grow(100)
    await r.open(11, O_RDONLY, () => expect(r.heads).toEqual([10, 11]))
    expect((await r.ll.stat(11)).size).toBe(100)
    expect(r.glimpses).toEqual([11])
  })

  it('glimpses a file it knows to be larger than what it would read, rather than reading its head', async () => {
    const r = rig()
    r.grow(READ_ON_OPEN + 1)
    await r.open(10, O_RDONLY)
    await r.open(10, O_RDONLY)
    expect([r.heads, r.glimpses]).toEqual([[10], [10]])
  })

  it('drops the bytes read with the open once this client writes the file', async () => {
    const r = rig()
    const fd = await r.open(10, O_RDONLY)
    const w = await r.open(10, O_WRONLY)
    expect(r.heads).toEqual([10])
    await r.ll.write(w, Buffer.from('new'), 0)
    await r.ll.read(fd, 0, 4096)
    expect(r.reads).toEqual([10])
  })

  it('for writing only, sends no glimpse; and one overtaken by a write of this client is not kept', async () => {
    const r = rig()
    await r.open(10, O_WRONLY)
    expect([r.glimpses, r.heads]).toEqual([[], []])
    const fd = await r.open(11, O_RDONLY, () => r.ll.cache.grow(11, 8192, 1))
    expect(r.ll.fidOf(fd)).toBe(11)
    r.grow(8192)
    expect((await r.ll.stat(11)).size).toBe(8192)
    expect([r.heads, r.glimpses]).toEqual([[11], [11]])
  })
})

describe('close of a read-only handle', () => {
  it("writes nothing back and leaves the file's write-back error to the close of its writer", async () => {
    const flushes: number[] = []
    let pending: LpError | undefined
    const mdc = {
      getattr: async (fid: number) => file(fid),
      open: async (fid: number) => ({ attr: file(fid), handle: '00000000000000aa' }),
      close: () => undefined,
    } as unknown as Mdc
    const lov = {
      glimpse: async (): Promise<Glimpse> => ({ size: 0, blocks: 0, mtime: 0 }),
      cachedSize: () => 0,
      lost: () => false,
      flush: async (fid: number) => void flushes.push(fid),
      takeError: () => {
        const e = pending
        pending = undefined
        return e
      },
    } as unknown as Lov
    const ll = lliteOver(mdc, lov)
    const writer = await ll.open(10, O_WRONLY)
    const reader = await ll.open(10, O_RDONLY)
    pending = new LpError('ENOSPC', 'no space left on ost1')
    await ll.flush(reader)
    await ll.release(reader)
    expect(flushes).toEqual([])
    await expect(ll.flush(writer)).rejects.toMatchObject({ code: 'ENOSPC' })
    expect(flushes).toEqual([10])
  })
})
