import type { Clock } from '../common/clock.js'
import { StatsSet } from '../common/stats.js'

/**
 * llite.*.stats: each VFS operation's count and latency, and the bytes read and written,
 * under Lustre's names. Llite's methods are marked with `@counted(...)`: one line each,
 * their bodies untouched.
 */
const OPS = {
  read_bytes: 'bytes',
  write_bytes: 'bytes',
  read: 'usecs',
  write: 'usecs',
  open: 'usecs',
  close: 'usecs',
  fsync: 'usecs',
  readdir: 'usecs',
  setattr: 'usecs',
  truncate: 'usecs',
  getattr: 'usecs',
  create: 'usecs',
  link: 'usecs',
  unlink: 'usecs',
  symlink: 'usecs',
  mkdir: 'usecs',
  rmdir: 'usecs',
  mknod: 'usecs',
  rename: 'usecs',
  statfs: 'usecs',
} as const

export type LliteOp = Exclude<keyof typeof OPS, 'read_bytes' | 'write_bytes'>

export class LliteStats {
  readonly set = new StatsSet(OPS)

  constructor(private readonly clock: Clock) {}

  get now(): number {
    return this.clock.now()
  }
}

/** What bytes an operation moved, from its result (read: the buffers; write: the count). */
type Moved<R> = (r: R) => number

/**
 * Count a Llite method under `op` (or the op its arguments name: unlink of a directory is
 * rmdir), its latency in microseconds whatever its outcome, and for read and write the bytes
 * it moved.
 */
export function counted<This extends { readonly stats: LliteStats }, A extends unknown[], R>(op: LliteOp | ((...a: A) => LliteOp), moved?: Moved<R>) {
  return (method: (this: This, ...a: A) => Promise<R>, _ctx: ClassMethodDecoratorContext<This>) =>
    async function (this: This, ...a: A): Promise<R> {
      const name = typeof op === 'function' ? op(...a) : op
      const start = this.stats.now
      try {
        const r = await method.call(this, ...a)
        if (moved) this.stats.set.add(name === 'read' ? 'read_bytes' : 'write_bytes', moved(r))
        return r
      } finally {
        this.stats.set.add(name, (this.stats.now - start) * 1000)
      }
    }
}
