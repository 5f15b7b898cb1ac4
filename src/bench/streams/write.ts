import type { StreamSpec } from '../jobs.js'
import { Pattern } from '../pattern.js'
import { overBlocks, writeAll, type Stream } from './stream.js'

/** Sequential writer: the file's deterministic data in blocks, then fsync (an application that wants its data safe). */
export function writeStream(s: Extract<StreamSpec, { kind: 'write' }>): (st: Stream) => Promise<object> {
  const pat = new Pattern(s.seed)
  const buf = Buffer.alloc(s.bs)
  return async (st) => {
    await overBlocks(st, { path: s.path, flags: 'w', size: s.size, bs: s.bs, fsync: true }, (fh, off, len) =>
      st.data(`write ${s.path}@${off}`, () => writeAll(fh, pat.fill(buf, s.file, off, len), len, off)),
    )
    return {}
  }
}
