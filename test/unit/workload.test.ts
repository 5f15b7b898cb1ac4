import { mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { afterEach, beforeEach, expect, test } from 'vitest'
import { copyTree, verifyTree } from '../../src/cluster/workload.js'

/** The demo's application, on plain directories: what it copies, and that its check sees a change. */
let dir: string
let src: string
let dst: string

beforeEach(() => {
  dir = mkdtempSync(path.join(os.tmpdir(), 'lproxy-workload-'))
  src = path.join(dir, 'src')
  dst = path.join(dir, 'dst')
  mkdirSync(path.join(src, 'a', 'b'), { recursive: true })
  writeFileSync(path.join(src, 'empty'), '')
  writeFileSync(path.join(src, 'a', 'small'), 'hello\n')
  // Larger than the copy's 1 MiB buffer, not a multiple of it.
  writeFileSync(path.join(src, 'a', 'b', 'big'), Buffer.alloc(2.5 * 2 ** 20, 0x5a))
  symlinkSync('../a/small', path.join(src, 'a', 'link'))
  mkdirSync(dst)
})

afterEach(() => rmSync(dir, { recursive: true, force: true }))

test('copies files, directories and symlinks, reporting the bytes as they go', () => {
  const progress: number[] = []
  const st = copyTree(src, dst, (b) => progress.push(b))
  expect(st).toMatchObject({ files: 3, dirs: 2, symlinks: 1, bytes: 2.5 * 2 ** 20 + 6, errors: [] })
  expect(progress.at(-1)).toBe(st.bytes)
  expect(progress).toEqual([...progress].sort((a, b) => a - b))
  expect(readFileSync(path.join(dst, 'a', 'b', 'big')).equals(readFileSync(path.join(src, 'a', 'b', 'big')))).toBe(true)
  expect(verifyTree(src, dst)).toEqual({ files: 3, bytes: st.bytes, mismatches: [] })
})

test('an operation that fails is counted as an error, and the copy goes on', () => {
  mkdirSync(path.join(dst, 'a'))
  const st = copyTree(src, dst, () => undefined)
  expect(st.errors).toEqual([expect.stringMatching(/^mkdir a: EEXIST/)])
  expect(st.files).toBe(3)
  expect(verifyTree(src, dst).mismatches).toEqual([])
})

test('the check finds a changed byte, a missing file and a symlink pointing elsewhere', () => {
  copyTree(src, dst, () => undefined)
  const big = path.join(dst, 'a', 'b', 'big')
  const data = readFileSync(big)
  data[2 ** 20 + 7] ^= 1
  writeFileSync(big, data)
  rmSync(path.join(dst, 'empty'))
  rmSync(path.join(dst, 'a', 'link'))
  symlinkSync('small', path.join(dst, 'a', 'link'))
  const v = verifyTree(src, dst)
  expect(v.mismatches).toHaveLength(3)
  expect(v.mismatches).toEqual(expect.arrayContaining(['a/b/big', 'a/link', expect.stringMatching(/^empty: ENOENT/)]))
})
