/**
 * Crash consistency on a real filesystem image: the targets live on a loop-mounted ext4 file
 * (fsync, rename and directory entries as a disk keeps them, not tmpfs). A journal damaged in
 * the middle refuses the start, naming the file and the byte offset, and is started past only
 * when the admin says so; a truncated CHECKPOINT falls back to the previous generation, and
 * nothing committed is lost.
 */
import { execFileSync } from 'node:child_process'
import { mkdtempSync, rmSync, promises as fsp } from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest'
import { ManualClock } from '../../src/common/clock.js'
import { NodeStartError } from '../helpers/nodes.js'
import { openTarget, TestClient } from '../helpers/target.js'
import type { Target } from '../../src/server/target/target.js'
import { Tier } from '../helpers/tier.js'

const NET = '127.0.86'
const PORT = 28650
/** A journal record: magic u32 | payload length u32 | crc u32 | payload. */
const HDR = 12

let base = ''
let fsdir = ''
let t: Tier | undefined
/** Targets opened in this process, stopped after each test whatever happened. */
const opened: Target[] = []

beforeAll(() => {
  base = mkdtempSync(path.join(os.tmpdir(), 'lp-ext4-'))
  const img = path.join(base, 'img')
  fsdir = path.join(base, 'fs')
  execFileSync('truncate', ['-s', '256M', img])
  execFileSync('mkfs.ext4', ['-q', '-F', img])
  execFileSync('mkdir', [fsdir])
  execFileSync('mount', ['-o', 'loop', img, fsdir])
})

afterEach(async () => {
  await t?.down()
  t = undefined
  for (const x of opened.splice(0)) await x.stop(false).catch(() => undefined)
}, 60_000)

afterAll(() => {
  // Lazily if something still holds it: the loop device goes once it is released.
  if (fsdir) execFileSync('umount', ['-l', fsdir])
  rmSync(base, { recursive: true, force: true })
})

/** The byte offsets of the records of a journal file. */
function records(buf: Buffer): number[] {
  const out: number[] = []
  for (let off = 0; off + HDR <= buf.length; off += HDR + buf.readUInt32BE(off + 4)) out.push(off)
  return out
}

describe('crash consistency on ext4', () => {
  it('a journal damaged mid-file refuses the start, naming the file and offset; --discard-corrupt-journal starts from the last good record', async () => {
    const dir = path.join(fsdir, 'journal-damage')
    await fsp.mkdir(dir)
    const tier = (t = await Tier.up({ net: NET, port: PORT, dir }))
    const a = await tier.client('a')
    await a.write('/f')
    // One commit each: one journal record each.
    for (let i = 0; i < 6; i++) await a.pwrite('/f', Buffer.alloc(4096, i + 1), i * 4096, true)
    await a.close()
    const committed = (await tier.targetStatus('ost1')).last_committed
    await tier.crash('ost1')
    const jdir = path.join(tier.dir('ost1'), 'ost', 'journal')
    const file = path.join(jdir, (await fsp.readdir(jdir)).filter((f) => f.endsWith('.jnl')).sort().pop()!)
    const buf = await fsp.readFile(file)
    const offs = records(buf)
    expect(offs.length).toBeGreaterThanOrEqual(4)
    // A byte of a record's payload, two whole records after it: damage, not a torn tail.
    const at = offs[offs.length - 3]!
    buf[at + HDR + 2]! ^= 0xff
    await fsp.writeFile(file, buf)
    const err = await tier.start('ost1', 'oss1').then(
      () => null,
      (e: unknown) => e,
    )
    expect(err).toBeInstanceOf(NodeStartError)
    expect((err as NodeStartError).errno).toBe('EUCLEAN')
    expect((err as NodeStartError).message).toContain(file)
    expect((err as NodeStartError).message).toContain(`at byte ${at}`)
    await tier.start('ost1', 'oss1', ['--discard-corrupt-journal'])
    await tier.recovered('ost1')
    expect((await tier.targetStatus('ost1')).last_committed).toBeLessThan(committed)
    // It serves: a new client reads the file.
    expect((await tier.fresh((v) => v.stat('/f'))).ino).toBeGreaterThan(0)
  })

  it('a truncated CHECKPOINT: the target starts from the previous generation with every committed create', async () => {
    const dir = path.join(fsdir, 'checkpoint-damage')
    const clock = new ManualClock()
    const first = await openTarget({ dir, kind: 'mdt', clock, tunables: { checkpointBytes: 1 } })
    opened.push(first.target)
    const c = new TestClient(first.target, 'client-cp')
    await c.connect()
    const names: string[] = []
    for (let i = 0; i < 4; i++) {
      names.push(`f${i}`)
      await c.ok('mdt_create', { parent: 1, name: `f${i}`, type: 'reg', mode: 0o644, uid: 1, gid: 2, time: 1000 })
      await c.ok('sync')
    }
    // Checkpoints are cut behind the journal: wait for two generations.
    await vi.waitFor(async () => expect((await fsp.readdir(dir)).filter((f) => f.startsWith('CHECKPOINT')).sort()).toEqual(['CHECKPOINT', 'CHECKPOINT.prev']), {
      timeout: 20_000,
      interval: 50,
    })
    const committed = first.target.lastCommitted
    await first.target.stop(false)
    const cp = path.join(dir, 'CHECKPOINT')
    await fsp.truncate(cp, (await fsp.stat(cp)).size >> 1)
    opened.splice(opened.indexOf(first.target), 1)
    const again = await openTarget({ dir, kind: 'mdt', clock, tunables: { checkpointBytes: 1 } })
    opened.push(again.target)
    expect(again.target.lastCommitted).toBe(committed)
    // Looked at by a new client: the old one is not coming back.
    again.target.abortRecovery()
    const v = new TestClient(again.target, 'client-verify')
    await v.connect()
    const r = await v.ok<{ entries: Array<{ name: string }> }>('mdt_readdir', { fid: 1, cookie: 0, count: 100 })
    expect(r.body.entries.map((e) => e.name).sort()).toEqual(names)
  })
})
