import { createHash } from 'node:crypto'
import { createReadStream, promises as fsp } from 'node:fs'
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

const CHUNK = 1024 * 1024

export async function copyTree(src: string, dst: string, onProgress: (bytes: number) => void): Promise<CopyStats> {
  const st: CopyStats = { files: 0, dirs: 0, symlinks: 0, bytes: 0, errors: [], longestOp: { ms: 0, what: '' }, ms: 0 }
  const t0 = Date.now()
  const timed = async <T>(what: string, fn: () => Promise<T>): Promise<T | undefined> => {
    const s = Date.now()
    try {
      return await fn()
    } catch (e) {
      st.errors.push(`${what}: ${(e as Error).message}`)
      return undefined
    } finally {
      const ms = Date.now() - s
      if (ms > st.longestOp.ms) st.longestOp = { ms, what }
    }
  }
  const walk = async (rel: string): Promise<void> => {
    for (const e of await fsp.readdir(path.join(src, rel), { withFileTypes: true })) {
      const r = path.join(rel, e.name)
      const from = path.join(src, r)
      const to = path.join(dst, r)
      if (e.isDirectory()) {
        await timed(`mkdir ${r}`, () => fsp.mkdir(to))
        st.dirs += 1
        await walk(r)
      } else if (e.isSymbolicLink()) {
        const target = await fsp.readlink(from)
        await timed(`symlink ${r}`, () => fsp.symlink(target, to))
        st.symlinks += 1
      } else if (e.isFile()) {
        await copyFile(from, to, r, timed, (n) => {
          st.bytes += n
          onProgress(st.bytes)
        })
        st.files += 1
      }
    }
  }
  await walk('')
  st.ms = Date.now() - t0
  return st
}

async function copyFile(
  from: string,
  to: string,
  rel: string,
  timed: <T>(what: string, fn: () => Promise<T>) => Promise<T | undefined>,
  progress: (n: number) => void,
): Promise<void> {
  const src = await fsp.open(from, 'r')
  const out = await timed(`create ${rel}`, () => fsp.open(to, 'wx'))
  try {
    if (!out) return
    const buf = Buffer.alloc(CHUNK)
    for (let off = 0; ; ) {
      const { bytesRead } = await src.read(buf, 0, CHUNK, off)
      if (!bytesRead) break
      await timed(`write ${rel}@${off}`, () => out.write(buf, 0, bytesRead, off))
      off += bytesRead
      progress(bytesRead)
    }
  } finally {
    await src.close()
    if (out) await timed(`close ${rel}`, () => out.close())
  }
}

export async function sha256(file: string): Promise<string> {
  const h = createHash('sha256')
  for await (const chunk of createReadStream(file)) h.update(chunk as Buffer)
  return h.digest('hex')
}

/** Compare every regular file and symlink of `src` with its copy; returns the mismatches. */
export async function verifyTree(src: string, dst: string): Promise<{ files: number; bytes: number; mismatches: string[] }> {
  const out = { files: 0, bytes: 0, mismatches: [] as string[] }
  const walk = async (rel: string): Promise<void> => {
    for (const e of await fsp.readdir(path.join(src, rel), { withFileTypes: true })) {
      const r = path.join(rel, e.name)
      const a = path.join(src, r)
      const b = path.join(dst, r)
      try {
        if (e.isDirectory()) await walk(r)
        else if (e.isSymbolicLink()) {
          if ((await fsp.readlink(a)) !== (await fsp.readlink(b))) out.mismatches.push(r)
        } else if (e.isFile()) {
          const [ha, hb, sa] = await Promise.all([sha256(a), sha256(b), fsp.stat(a)])
          if (ha !== hb) out.mismatches.push(r)
          out.files += 1
          out.bytes += sa.size
        }
      } catch (err) {
        out.mismatches.push(`${r}: ${(err as Error).message}`)
      }
    }
  }
  await walk('')
  return out
}
