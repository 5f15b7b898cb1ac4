import { promises as fsp } from 'node:fs'
import type { FileHandle } from 'node:fs/promises'
import { MAX_ERRORS_KEPT, type AppError, type StreamResult } from '../result.js'
import { Meter } from '../timeline.js'

/**
 * One stream of a workload as an application runs it: every operation is timed into the
 * run's buckets, and every failure is what the application saw: recorded, then the stream
 * goes on, as a resilient application would, until too many say the filesystem cannot do it.
 */
const GIVE_UP_AFTER = 50

export class Stream {
  private readonly meter: Meter
  private readonly start = Date.now()
  private bytes = 0
  private ops = 0
  private dataEnd = this.start
  private readonly errors: AppError[] = []
  private errorCount = 0

  constructor(private readonly t0: number) {
    this.meter = new Meter(t0)
  }

  get failed(): boolean {
    return this.errorCount >= GIVE_UP_AFTER
  }

  /** A data operation (counted in throughput): `fn` resolves to the bytes it moved. */
  async data(what: string, fn: () => Promise<number>): Promise<boolean> {
    try {
      const bytes = await fn()
      const now = Date.now()
      this.meter.add(now, bytes)
      this.bytes += bytes
      this.ops += 1
      this.dataEnd = now
      return true
    } catch (e) {
      this.error(what, e)
      return false
    }
  }

  /** Open, fsync, close and the like: their failures count, their time is the job's but not a data operation's. */
  async call<T>(what: string, fn: () => Promise<T>): Promise<T | undefined> {
    try {
      return await fn()
    } catch (e) {
      this.error(what, e)
      return undefined
    }
  }

  error(what: string, e: unknown): void {
    this.errorCount += 1
    if (this.errors.length < MAX_ERRORS_KEPT) this.errors.push({ at_ms: Date.now() - this.t0, op: what, error: (e as Error).message ?? String(e) })
  }

  progress(): { bytes: number; ops: number } {
    return { bytes: this.bytes, ops: this.ops }
  }

  result(extra: Partial<StreamResult>): StreamResult {
    return {
      bytes: this.bytes,
      ops: this.ops,
      start_ms: this.start - this.t0,
      data_end_ms: this.dataEnd - this.t0,
      end_ms: Date.now() - this.t0,
      buckets: { bytes: this.meter.bytes, ops: this.meter.ops },
      errors: { count: this.errorCount, first: this.errors },
      ...extra,
    }
  }
}

/** A short write is an error the application would see, not bytes to count. */
export async function writeAll(fh: FileHandle, buf: Buffer, len: number, at: number): Promise<number> {
  const { bytesWritten } = await fh.write(buf, 0, len, at)
  if (bytesWritten !== len) throw new Error(`short write: ${bytesWritten} of ${len} bytes`)
  return len
}

/** Fsync (when asked) and close at the end of a stream. */
export async function finish(st: Stream, fh: FileHandle, fsync: boolean): Promise<void> {
  if (fsync) await st.call('fsync', () => fh.sync())
  await st.call('close', () => fh.close())
}

/** Opens `path` and runs `block` over [0, size) in `bs` steps (the last may be shorter), then finishes; false if it did not open. */
export async function overBlocks(
  st: Stream,
  o: { path: string; flags: 'r' | 'w'; size: number; bs: number; fsync: boolean },
  block: (fh: FileHandle, off: number, len: number) => Promise<unknown>,
): Promise<boolean> {
  const fh = await st.call(`open ${o.path}`, () => fsp.open(o.path, o.flags))
  if (!fh) return false
  for (let off = 0; off < o.size && !st.failed; off += o.bs) await block(fh, off, Math.min(o.bs, o.size - off))
  await finish(st, fh, o.fsync)
  return true
}
