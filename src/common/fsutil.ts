import { promises as fsp } from 'node:fs'
import path from 'node:path'
import { slice, totalLength } from './chunks.js'

let tmpSeq = 0

/** Write a file so that after a crash either the old or the new content is there, whole. */
export async function writeFileAtomic(file: string, data: string | Uint8Array): Promise<void> {
  // Unique per call: two writes of one file at once must not share (and steal) a temp file.
  const tmp = `${file}.tmp-${process.pid}-${++tmpSeq}`
  const fh = await fsp.open(tmp, 'w', 0o600)
  try {
    await fh.writeFile(data)
    await fh.sync()
  } finally {
    await fh.close()
  }
  await fsp.rename(tmp, file)
  await fsyncDir(path.dirname(file))
}

/** Write every byte of `parts` (writev may write less than asked), at `position` or, when null, where the file is. */
export async function writevAll(fh: fsp.FileHandle, parts: readonly Buffer[], position: number | null): Promise<void> {
  const total = totalLength(parts)
  let done = 0
  while (done < total) {
    const { bytesWritten } = await fh.writev(slice(parts, done), position === null ? undefined : position + done)
    done += bytesWritten
  }
}

export async function fsyncDir(dir: string): Promise<void> {
  const fh = await fsp.open(dir, 'r')
  try {
    await fh.sync()
  } finally {
    await fh.close()
  }
}

export async function readJson<T>(file: string): Promise<T | undefined> {
  try {
    return JSON.parse(await fsp.readFile(file, 'utf8')) as T
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined
    throw e
  }
}

export async function exists(p: string): Promise<boolean> {
  try {
    await fsp.access(p)
    return true
  } catch {
    return false
  }
}
