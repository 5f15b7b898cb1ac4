import { promises as fsp } from 'node:fs'
import type { StreamSpec } from '../jobs.js'
import { PAGE, Pattern } from '../pattern.js'
import { randomPages } from '../prng.js'
import { MAX_ERRORS_KEPT } from '../result.js'
import { overBlocks, type Stream } from './stream.js'

/**
 * Reads a file back and compares every page with what was written (regenerated from the
 * seed). For the random writer's file, pages it never wrote must be holes (zeros).
 */
export function verifyStream(s: Extract<StreamSpec, { kind: 'verify' }>): (st: Stream) => Promise<object> {
  const pat = new Pattern(s.seed)
  const buf = Buffer.alloc(s.bs)
  const scratch = Buffer.alloc(s.bs)
  const written = writtenPages(s)
  return async (st) => {
    const bad = new Mismatches()
    const opened = await overBlocks(st, { path: s.path, flags: 'r', size: s.size, bs: s.bs, fsync: false }, (fh, off, len) =>
      st.data(`read ${s.path}@${off}`, async () => {
        const { bytesRead } = await fh.read(buf, 0, len, off)
        const whole = bytesRead - (bytesRead % PAGE)
        for (const at of pat.badPages(buf, s.file, off, whole, scratch, written)) bad.add(`${s.path}@${at}`)
        if (whole < len) bad.add(`${s.path}@${off + whole}: ends early`, (len - whole) / PAGE)
        return bytesRead
      }),
    )
    if (!opened) bad.add(`${s.path}: cannot be opened`, s.size / PAGE)
    else {
      const size = (await st.call(`stat ${s.path}`, () => fsp.stat(s.path)))?.size
      if (size !== s.size) bad.add(`${s.path}: size ${size}, ${s.size} written`)
    }
    return bad.result()
  }
}

/** Pages that differ from what was written, and the first of them, as a stream's result reports them. */
export class Mismatches {
  private pages = 0
  private readonly first: string[] = []

  add(what: string, pages = 1): void {
    this.pages += pages
    if (this.first.length < MAX_ERRORS_KEPT) this.first.push(what)
  }

  result(): { bad_pages: number; first_bad: string[] } {
    return { bad_pages: this.pages, first_bad: this.first }
  }
}

function writtenPages(s: Extract<StreamSpec, { kind: 'verify' }>): ((at: number) => boolean) | undefined {
  if (s.randomWrites === undefined) return undefined
  const pages = s.size / PAGE
  const map = new Uint8Array(pages)
  const next = randomPages(s.seed, pages)
  for (let i = 0; i < s.randomWrites; i++) map[next()] = 1
  return (at) => map[at / PAGE] === 1
}
