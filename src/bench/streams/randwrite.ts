import { promises as fsp } from 'node:fs'
import type { StreamSpec } from '../jobs.js'
import { PAGE, Pattern } from '../pattern.js'
import { randomPages } from '../prng.js'
import { finish, writeAll, type Stream } from './stream.js'

/**
 * Random 4 KiB writer over a sparse file, for a fixed time, then fsync. The offsets come
 * from the seed, so the verifier knows every page written from the count issued.
 */
export function randwriteStream(s: Extract<StreamSpec, { kind: 'randwrite' }>): (st: Stream) => Promise<object> {
  const pat = new Pattern(s.seed)
  const next = randomPages(s.seed, s.size / PAGE)
  const buf = Buffer.alloc(PAGE)
  return async (st) => {
    let issued = 0
    const fh = await st.call(`open ${s.path}`, () => fsp.open(s.path, 'w'))
    if (!fh) return { issued }
    await st.call('ftruncate', () => fh.truncate(s.size))
    const end = Date.now() + s.seconds * 1000
    while (Date.now() < end && !st.failed) {
      const at = next() * PAGE
      issued += 1
      pat.fill(buf, s.file, at, PAGE)
      await st.data(`write ${s.path}@${at}`, () => writeAll(fh, buf, PAGE, at))
    }
    await finish(st, fh, true)
    return { issued }
  }
}
