import type { StreamSpec } from '../jobs.js'
import { overBlocks, type Stream } from './stream.js'

/** Sequential reader of a file the writer made; checking the bytes is the verifier's job, so reading is not slowed by it. */
export function readStream(s: Extract<StreamSpec, { kind: 'read' }>): (st: Stream) => Promise<object> {
  const buf = Buffer.alloc(s.bs)
  return async (st) => {
    await overBlocks(st, { path: s.path, flags: 'r', size: s.size, bs: s.bs, fsync: false }, (fh, off, len) =>
      st.data(`read ${s.path}@${off}`, async () => {
        const { bytesRead } = await fh.read(buf, 0, len, off)
        if (bytesRead === 0) throw new Error(`end of file at ${off}, expected ${s.size} bytes`)
        return bytesRead
      }),
    )
    return {}
  }
}
