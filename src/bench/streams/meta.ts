import { promises as fsp } from 'node:fs'
import path from 'node:path'
import { META_FILE_BYTES, type StreamSpec } from '../jobs.js'
import { Pattern } from '../pattern.js'
import { writeAll, type Stream } from './stream.js'
import { Mismatches } from './verify.js'

/**
 * The metadata mix: create (with 4 KiB of data), stat, then unlink `count` small files, each
 * phase timed alone. Before the unlink every file is read back and compared with what was
 * written (a phase of its own, outside the three figures): a failover during the creates must
 * not lose or tear a small file either.
 */
export function metaStream(s: Extract<StreamSpec, { kind: 'meta' }>): (st: Stream) => Promise<object> {
  const pat = new Pattern(s.seed)
  const buf = Buffer.alloc(META_FILE_BYTES)
  const scratch = Buffer.alloc(META_FILE_BYTES)
  const file = (i: number) => path.join(s.dir, `f${i}`)
  return async (st) => {
    const phases: Record<string, { ops: number; ms: number }> = {}
    const phase = async (name: string, fn: (i: number) => Promise<number>) => {
      const t = Date.now()
      let ops = 0
      for (let i = 0; i < s.count && !st.failed; i++) if (await st.data(`${name} ${file(i)}`, () => fn(i))) ops += 1
      phases[name] = { ops, ms: Date.now() - t }
    }
    await st.call(`mkdir ${s.dir}`, () => fsp.mkdir(s.dir, { recursive: true }))
    await phase('create', async (i) => {
      const fh = await fsp.open(file(i), 'wx')
      try {
        return await writeAll(fh, pat.fill(buf, s.file + i, 0), META_FILE_BYTES, 0)
      } finally {
        await fh.close()
      }
    })
    await phase('stat', async (i) => {
      const { size } = await fsp.stat(file(i))
      if (size !== META_FILE_BYTES) throw new Error(`size ${size}, ${META_FILE_BYTES} written`)
      return 0
    })
    const bad = new Mismatches()
    // Its bytes are not the job's: those are the bytes it wrote.
    await phase('verify', async (i) => {
      const got = await fsp.readFile(file(i))
      if (got.length !== META_FILE_BYTES) bad.add(`${file(i)}: size ${got.length}, ${META_FILE_BYTES} written`)
      else for (const at of pat.badPages(got, s.file + i, 0, META_FILE_BYTES, scratch)) bad.add(`${file(i)}@${at}`)
      return 0
    })
    await phase('unlink', async (i) => {
      await fsp.unlink(file(i))
      return 0
    })
    await st.call(`rmdir ${s.dir}`, () => fsp.rmdir(s.dir))
    return { phases, ...bad.result() }
  }
}
