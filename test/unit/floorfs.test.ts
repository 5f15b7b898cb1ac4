import { describe, expect, it } from 'vitest'
import { FLOOR_ROOT, FloorFs } from '../../src/bench/floorfs.js'
import { O_RDONLY, O_WRONLY } from '../../src/llite/file.js'
import { ManualClock } from '../../src/common/clock.js'
import { READ_ON_OPEN } from '../../src/llite/llite.js'
import { CLOSE_BATCH, CLOSE_DELAY_MS } from '../../src/mdc/mdc.js'

/**
 * The selftest's floor filesystem: it must wait for exactly the RPCs llite waits for in the
 * metadata mix (else the floor is not lproxy's), and keep what it is given (else the mix's
 * read-back fails on the floor mount).
 */
function counted() {
  let sent = 0
  let pending: Array<() => void> = []
  const clock = new ManualClock(1000)
  const fs = new FloorFs(
    () =>
      new Promise<void>((resolve) => {
        sent += 1
        pending.push(resolve)
      }),
    clock,
  )
  /** Answers every RPC sent so far, as the stand-in does at once. */
  const answer = () => {
    for (const r of pending) r()
    pending = []
  }
  /** Runs `op` with its RPCs answered; how many it waited for. */
  const rpcsOf = async <T>(op: () => Promise<T>): Promise<{ value: T; rpcs: number }> => {
    const before = sent
    const p = op()
    // Each awaited RPC is answered in turn, until the call has settled.
    let settled = false
    void p.finally(() => (settled = true)).catch(() => undefined)
    while (!settled) {
      answer()
      await new Promise((r) => setImmediate(r))
    }
    return { value: await p, rpcs: sent - before }
  }
  return { fs, clock, rpcsOf, unanswered: () => pending.length, sent: () => sent }
}

describe('FloorFs', () => {
  it('waits for one RPC per create, close with data and unlink, none for lookups, stats and writes', async () => {
    const { fs, rpcsOf } = counted()
    const dir = await rpcsOf(() => fs.mkdir(FLOOR_ROOT, 'd', 0o755))
    expect(dir.rpcs).toBe(1)
    const c = await rpcsOf(() => fs.create(dir.value.fid, 'f', 0o644, O_WRONLY))
    expect(c.rpcs).toBe(1)
    const data = Buffer.alloc(4096, 7)
    expect(await rpcsOf(() => fs.write(c.value.fd, data, 0))).toEqual({ value: 4096, rpcs: 0 })
    expect((await rpcsOf(() => fs.flush(c.value.fd))).rpcs).toBe(1)
    // A second flush has nothing to send.
    expect((await rpcsOf(() => fs.flush(c.value.fd))).rpcs).toBe(0)
    const seen = await rpcsOf(() => fs.lookupStat(dir.value.fid, 'f'))
    expect(seen.rpcs).toBe(0)
    expect(seen.value.st).toMatchObject({ ino: c.value.attr.fid, size: 4096, mode: 0o100644 })
    expect((await rpcsOf(() => fs.unlink(dir.value.fid, 'f'))).rpcs).toBe(1)
    await expect(fs.lookupStat(dir.value.fid, 'f')).rejects.toMatchObject({ code: 'ENOENT' })
  })

  it("answers release at once, and sends the closes in batches, as llite's mdc does", async () => {
    const { fs, clock, rpcsOf, unanswered } = counted()
    const c = await rpcsOf(() => fs.create(FLOOR_ROOT, 'f', 0o644, O_WRONLY))
    await fs.release(c.value.fd)
    expect(unanswered()).toBe(0)
    await expect(fs.release(c.value.fd)).rejects.toMatchObject({ code: 'EBADF' })
    await clock.advance(CLOSE_DELAY_MS)
    expect(unanswered()).toBe(1)
    for (let i = 0; i < CLOSE_BATCH; i++) await fs.release((await rpcsOf(() => fs.create(FLOOR_ROOT, `g${i}`, 0o644, O_WRONLY))).value.fd)
    expect(unanswered()).toBe(1)
  })

  it('refuses what a filesystem refuses, before sending anything', async () => {
    const { fs, rpcsOf, sent } = counted()
    await rpcsOf(() => fs.create(FLOOR_ROOT, 'f', 0o644, O_WRONLY))
    await rpcsOf(() => fs.mkdir(FLOOR_ROOT, 'd', 0o755))
    const d = (await fs.lookupStat(FLOOR_ROOT, 'd')).attr.fid
    await rpcsOf(() => fs.mkdir(d, 'sub', 0o755))
    const before = sent()
    for (const [call, code] of [
      [() => fs.create(FLOOR_ROOT, 'f', 0o644, O_WRONLY), 'EEXIST'],
      [() => fs.unlink(FLOOR_ROOT, 'nope'), 'ENOENT'],
      [() => fs.unlink(FLOOR_ROOT, 'd'), 'EISDIR'],
      [() => fs.unlink(FLOOR_ROOT, 'f', true), 'ENOTDIR'],
      [() => fs.unlink(FLOOR_ROOT, 'd', true), 'ENOTEMPTY'],
      [() => fs.open(d, O_WRONLY), 'EISDIR'],
      [() => fs.rename(), 'EPERM'],
    ] as const) {
      const r = await rpcsOf(call as () => Promise<unknown>).catch((e: { code: string }) => e)
      expect(r).toMatchObject({ code })
    }
    expect(sent()).toBe(before)
  })

  it('keeps what was written, and an unlinked file open', async () => {
    const { fs, rpcsOf } = counted()
    const c = await rpcsOf(() => fs.create(FLOOR_ROOT, 'f', 0o644, O_WRONLY))
    await fs.write(c.value.fd, Buffer.from('hello'), 0)
    await fs.write(c.value.fd, Buffer.from('world'), 8)
    const fid = c.value.attr.fid
    const fd = (await rpcsOf(() => fs.open(fid, O_RDONLY))).value
    await rpcsOf(() => fs.unlink(FLOOR_ROOT, 'f'))
    const got = await rpcsOf(() => fs.read(fd, 0, 100))
    // Read whole with its open, as llite reads a small file.
    expect(got.rpcs).toBe(0)
    expect(Buffer.concat(got.value)).toEqual(Buffer.from('hello\0\0\0world'))
    expect(Buffer.concat((await rpcsOf(() => fs.read(fd, 20, 10))).value)).toHaveLength(0)
    expect(await fs.stat(fid)).toMatchObject({ size: 13, nlink: 0 })
    // Gone with the last handle.
    await fs.release(fd)
    expect(await fs.stat(fid)).toMatchObject({ size: 13 })
    await fs.release(c.value.fd)
    await expect(fs.stat(fid)).rejects.toMatchObject({ code: 'ENOENT' })
  })

  it('waits for an RPC per read of a file larger than an open reads', async () => {
    const { fs, rpcsOf } = counted()
    const c = await rpcsOf(() => fs.create(FLOOR_ROOT, 'big', 0o644, O_WRONLY))
    await fs.write(c.value.fd, Buffer.alloc(READ_ON_OPEN + 1, 7), 0)
    const fd = (await rpcsOf(() => fs.open(c.value.attr.fid, O_RDONLY))).value
    const got = await rpcsOf(() => fs.read(fd, READ_ON_OPEN, 10))
    expect([got.rpcs, Buffer.concat(got.value)]).toEqual([1, Buffer.alloc(1, 7)])
  })
})
