import { promises as fsp } from 'node:fs'
import path from 'node:path'
import type { z } from 'zod'
import { slice, totalLength } from './chunks.js'

let tmpSeq = 0

/**
 * Write a file so that after a crash either the old or the new content is there, whole.
 * `guard` (a fence) runs before anything is written and again right before the new content
 * takes the old one's place: when it throws, the file is left as it was.
 */
export async function writeFileAtomic(file: string, data: string | Uint8Array, guard?: () => Promise<void>): Promise<void> {
  await guard?.()
  const tmp = await writeTemp(file, data, 'w')
  // Refused now (fenced: the directory is another node's): the temp file stays as it is, since
  // even removing it would be a write.
  await guard?.()
  await fsp.rename(tmp, file)
  await fsyncDir(path.dirname(file))
}

/**
 * Create `file` with `data`, whole or not at all, never replacing one that exists (EEXIST):
 * written 0600 under a temporary name and linked in, so a kill midway leaves no empty or torn
 * file behind.
 */
export async function writeFileExclusive(file: string, data: string | Uint8Array): Promise<void> {
  const tmp = await writeTemp(file, data, 'wx')
  try {
    await fsp.link(tmp, file)
  } finally {
    await fsp.rm(tmp, { force: true })
  }
  await fsyncDir(path.dirname(file))
}

/** `data` in a new temporary file beside `file`, 0600 from the start and synced; its name. */
async function writeTemp(file: string, data: string | Uint8Array, flag: 'w' | 'wx'): Promise<string> {
  // Unique per call: two writes of one file at once must not share (and steal) a temp file.
  const tmp = `${file}.tmp-${process.pid}-${++tmpSeq}`
  const fh = await fsp.open(tmp, flag, 0o600)
  try {
    await fh.writeFile(data)
    await fh.sync()
  } finally {
    await fh.close()
  }
  return tmp
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

/**
 * mkdir -p whose new directories survive a crash: the entry of each directory made is in its
 * parent, and a parent's entry is only durable once the parent is fsynced.
 */
export async function mkdirDurable(dir: string, mode?: number): Promise<void> {
  const first = await fsp.mkdir(dir, { recursive: true, mode })
  if (first === undefined) return
  for (let d = path.resolve(dir); ; d = path.dirname(d)) {
    await fsyncDir(path.dirname(d))
    if (d === path.resolve(first)) break
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

export class BadFileError extends Error {}

/**
 * A JSON file (undefined when there is none), as `schema` says it must be: what is on disk is
 * input like any other, and a damaged or edited file is refused with its path and field.
 * Without a schema the caller checks what it gets.
 */
export async function readJson<T>(file: string, schema?: z.ZodType<T>): Promise<T | undefined> {
  let text: string
  try {
    text = await fsp.readFile(file, 'utf8')
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined
    throw e
  }
  let json: unknown
  try {
    json = JSON.parse(text)
  } catch (e) {
    throw new BadFileError(`${file}: not JSON (${(e as Error).message})`)
  }
  if (!schema) return json as T
  const r = schema.safeParse(json)
  if (!r.success) {
    const issue = r.error.issues[0]
    throw new BadFileError(`${file}: ${issue ? `${issue.path.join('.') || 'content'}: ${issue.message}` : 'malformed'}`)
  }
  return r.data
}

export async function exists(p: string): Promise<boolean> {
  try {
    await fsp.access(p)
    return true
  } catch {
    return false
  }
}
