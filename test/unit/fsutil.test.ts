import { describe, it, expect, afterAll, afterEach, vi } from 'vitest'
import { promises as fsp } from 'node:fs'
import path from 'node:path'
import { mkdirDurable, writeFileAtomic } from '../../src/common/fsutil.js'
import { LpError } from '../../src/protocol/errno.js'
import { ObjectStore } from '../../src/server/ost/store.js'
import { tempDir, removeTempDirs } from '../helpers/nodes.js'

afterAll(removeTempDirs)
afterEach(() => vi.restoreAllMocks())

/** The directories fsynced (opened read-only and synced) while `fn` runs. */
async function fsyncedDirs(fn: () => Promise<void>): Promise<string[]> {
  const synced: string[] = []
  const open = fsp.open
  vi.spyOn(fsp, 'open').mockImplementation(async function (this: unknown, p, flags, mode) {
    const fh = await open.call(fsp, p, flags, mode)
    if (flags === 'r' && (await fh.stat()).isDirectory()) {
      const sync = fh.sync.bind(fh)
      fh.sync = async () => {
        synced.push(String(p))
        return sync()
      }
    }
    return fh
  })
  await fn()
  return synced
}

describe('durable directories', () => {
  it('mkdirDurable fsyncs the parent of every directory it made, and nothing when all exist', async () => {
    const root = await tempDir('lp-fsutil')
    const leaf = path.join(root, 'a', 'b', 'c')
    const synced = await fsyncedDirs(() => mkdirDurable(leaf))
    expect(new Set(synced)).toEqual(new Set([root, path.join(root, 'a'), path.join(root, 'a', 'b')]))
    expect((await fsp.stat(leaf)).isDirectory()).toBe(true)
    expect(await fsyncedDirs(() => mkdirDurable(leaf))).toEqual([])
  })

  it("an OST's O/ and O/dN are made durable when it first loads", async () => {
    const root = await tempDir('lp-fsutil')
    const synced = await fsyncedDirs(() => new ObjectStore(root).load())
    expect(synced).toContain(root)
    expect(synced).toContain(path.join(root, 'O'))
    expect((await fsp.readdir(path.join(root, 'O'))).length).toBe(32)
  })
})

describe('writeFileAtomic with a fence', () => {
  const fenced = () => Promise.reject(new LpError('ENODEV', 'fenced'))

  it('refused before anything is written: no file, no temp file', async () => {
    const root = await tempDir('lp-fsutil')
    await expect(writeFileAtomic(path.join(root, 'f'), 'new', fenced)).rejects.toThrow(/fenced/)
    expect(await fsp.readdir(root)).toEqual([])
  })

  it('refused right before the rename: the old content stays', async () => {
    const root = await tempDir('lp-fsutil')
    const f = path.join(root, 'f')
    await writeFileAtomic(f, 'old')
    let calls = 0
    await expect(writeFileAtomic(f, 'new', () => (++calls === 1 ? Promise.resolve() : fenced()))).rejects.toThrow(/fenced/)
    expect(await fsp.readFile(f, 'utf8')).toBe('old')
  })
})
