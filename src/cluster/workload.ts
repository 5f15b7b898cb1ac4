import { createHash } from 'node:crypto'
import fs from 'node:fs'
import path from 'node:path'

/**
 * An application's view of the mount: copy a real tree into it, timing every operation
 * (the longest one is the stall a failover cost the application), then verify every byte.
 */
export interface CopyStats {
  files: number
  dirs: number
  symlinks: number
  bytes: number
  errors: string[]
  /** The longest single operation, ms, and what it was. */
  longestOp: { ms: number; what: string }
  ms: number
}

export interface VerifyStats {
  files: number
  bytes: number
  mismatches: string[]
}

const CHUNK = 1024 * 1024

/**
 * Copies `src` into `dst` with plain blocking syscalls, as `cp -r` does: run it in a thread
 * of its own (treeworker.ts), never on an event loop that must go on meanwhile.
 */
export function copyTree(src: string, dst: string, onProgress: (bytes: number) => void): CopyStats {
  const st: CopyStats = { files: 0, dirs: 0, symlinks: 0, bytes: 0, errors: [], longestOp: { ms: 0, what: '' }, ms: 0 }
  const t0 = Date.now()
  const timed = <T>(what: string, fn: () => T): T | undefined => {
    const s = Date.now()
    try {
      return fn()
    } catch (e) {
      st.errors.push(`${what}: ${(e as Error).message}`)
      return undefined
    } finally {
      const ms = Date.now() - s
      if (ms > st.longestOp.ms) st.longestOp = { ms, what }
    }
  }
  const buf = Buffer.allocUnsafe(CHUNK)
  const copyFile = (from: string, to: string, rel: string): void => {
    const input = fs.openSync(from, 'r')
    const out = timed(`create ${rel}`, () => fs.openSync(to, 'wx'))
    try {
      if (out === undefined) return
      for (let off = 0; ; ) {
        const n = fs.readSync(input, buf, 0, CHUNK, off)
        if (!n) break
        timed(`write ${rel}@${off}`, () => writeFully(out, buf.subarray(0, n), off))
        off += n
        st.bytes += n
        onProgress(st.bytes)
      }
    } finally {
      fs.closeSync(input)
      if (out !== undefined) timed(`close ${rel}`, () => fs.closeSync(out))
    }
  }
  const walk = (rel: string): void => {
    for (const e of fs.readdirSync(path.join(src, rel), { withFileTypes: true })) {
      const r = path.join(rel, e.name)
      const from = path.join(src, r)
      const to = path.join(dst, r)
      if (e.isDirectory()) {
        timed(`mkdir ${r}`, () => fs.mkdirSync(to))
        st.dirs += 1
        walk(r)
      } else if (e.isSymbolicLink()) {
        const target = fs.readlinkSync(from)
        timed(`symlink ${r}`, () => fs.symlinkSync(target, to))
        st.symlinks += 1
      } else if (e.isFile()) {
        copyFile(from, to, r)
        st.files += 1
      }
    }
  }
  walk('')
  st.ms = Date.now() - t0
  return st
}

function writeFully(fd: number, data: Buffer, at: number): void {
  for (let done = 0; done < data.length; ) done += fs.writeSync(fd, data, done, data.length - done, at + done)
}

function sha256(file: string, buf: Buffer): string {
  const h = createHash('sha256')
  const fd = fs.openSync(file, 'r')
  try {
    for (let n; (n = fs.readSync(fd, buf, 0, buf.length, null)) > 0; ) h.update(buf.subarray(0, n))
  } finally {
    fs.closeSync(fd)
  }
  return h.digest('hex')
}

/** Compares every regular file and symlink of `src` with its copy (blocking, as copyTree). */
export function verifyTree(src: string, dst: string): VerifyStats {
  const out: VerifyStats = { files: 0, bytes: 0, mismatches: [] }
  const buf = Buffer.allocUnsafe(CHUNK)
  const walk = (rel: string): void => {
    for (const e of fs.readdirSync(path.join(src, rel), { withFileTypes: true })) {
      const r = path.join(rel, e.name)
      const a = path.join(src, r)
      const b = path.join(dst, r)
      try {
        if (e.isDirectory()) walk(r)
        else if (e.isSymbolicLink()) {
          if (fs.readlinkSync(a) !== fs.readlinkSync(b)) out.mismatches.push(r)
        } else if (e.isFile()) {
          if (sha256(a, buf) !== sha256(b, buf)) out.mismatches.push(r)
          out.files += 1
          out.bytes += fs.statSync(a).size
        }
      } catch (err) {
        out.mismatches.push(`${r}: ${(err as Error).message}`)
      }
    }
  }
  walk('')
  return out
}
