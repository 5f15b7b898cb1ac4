import { promises as fsp } from 'node:fs'
import path from 'node:path'
import { randomInt } from 'node:crypto'
import { z } from 'zod'
import type { Clock, Timer } from '../../common/clock.js'
import { readJson, writeFileAtomic } from '../../common/fsutil.js'
import { LpError } from '../../protocol/errno.js'

/**
 * Multiple-mount protection (ext4 MMP): the serving node bumps a sequence number in the
 * target's `mmp` block every interval; a node that wants the target waits long enough to see
 * whether anyone is still bumping it, and a serving node that finds a foreign sequence stops.
 *
 * The block also records the check interval, which follows how long the block's writes take
 * (ext4's mmp_check_interval): a node starting the target waits by the interval it finds
 * there, so a holder whose storage is slow is not taken for a dead one.
 *
 * The holder is also a fence: every write to the target's directory asks `check()` first,
 * and a write is allowed only while the last read of the block that found this node's own
 * sequence is younger than the recorded interval. A node resumed after a SIGSTOP (its timers
 * all overdue, fired in any order) therefore reads the block again before its first write,
 * and once another node's sequence is seen nothing of this node reaches the target again.
 * The heartbeat itself asks again between its temp file and the rename that puts it in place.
 */
const BlockSchema = z.object({
  seq: z.number().int(),
  state: z.enum(['active', 'clean']),
  node: z.string(),
  nid: z.string(),
  pid: z.number().int(),
  /** Wall-clock time of the last update, ms. */
  time: z.number(),
  /** The holder's check interval, ms (absent in blocks written before it was recorded). */
  interval: z.number().positive().optional(),
})
export type MmpBlock = z.infer<typeof BlockSchema>

/** What every writer to a target directory asks right before it writes. */
export interface Fence {
  /** Resolves when this node may write the target now; throws ENODEV once another node holds it. */
  check(): Promise<void>
  /** Set for good once another node's sequence was found. */
  readonly fenced: boolean
}

/** ext4's EXT4_MMP_CHECK_MULT: the check interval is at least this many block write times. */
const CHECK_MULT = 2
/** ext4's EXT4_MMP_MAX_CHECK_INTERVAL. */
export const MMP_MAX_INTERVAL_MS = 300_000

export interface MmpOptions {
  dir: string
  /** The update interval, and the least check interval. */
  intervalMs: number
  /** The most the check interval may grow to (default MMP_MAX_INTERVAL_MS). */
  maxIntervalMs?: number
  clock: Clock
  node: string
  nid: string
  /** Called once when another node's sequence shows up in our block. */
  onForeign: (holder: MmpBlock) => void
}

const FILE = 'mmp'

export async function readMmp(dir: string): Promise<MmpBlock | undefined> {
  const file = path.join(dir, FILE)
  const raw = await readJson<unknown>(file)
  if (raw === undefined) return undefined
  const b = BlockSchema.safeParse(raw)
  if (!b.success) throw new LpError('EUCLEAN', `${file} is not an MMP block: ${b.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; ')}`)
  return b.data
}

/** What a node starting the target waits, twice: long enough to see a live holder's sequence move. */
export function mmpWaitMs(intervalMs: number): number {
  return 2 * intervalMs + Math.ceil(intervalMs / 2)
}

export class Mmp implements Fence {
  /** The newest sequence we wrote or tried to write: the next heartbeat writes one more. */
  private seq = 0
  /** The newest sequence known to be on disk: its write's rename landed. */
  private landed = 0
  /**
   * The oldest of our sequences the block may still show: the one on disk before the last
   * write that landed (a read racing that write may find it). Writes that failed since may or
   * may not have landed (one whose rename went through), so every sequence from this one up
   * to `seq` is ours.
   */
  private floor = 0
  private timer: Timer | null = null
  private ticking: Promise<void> | null = null
  private stopped = false
  /** The block that showed another node's sequence: from then on, nothing is written. */
  private holder: MmpBlock | null = null
  /** clock.now() when the last read that found our own sequence began. */
  private checkedAt = -Infinity
  private verifying: Promise<void> | null = null
  /** The check interval measured from our block writes; recorded by the next write. */
  private checkMs: number
  /** The check interval in the last block we wrote: how long a read of ours is trusted. */
  private recordedMs: number

  constructor(private readonly o: MmpOptions) {
    this.checkMs = o.intervalMs
    this.recordedMs = o.intervalMs
  }

  get fenced(): boolean {
    return this.holder !== null
  }

  /** The check interval the next block write records. */
  get intervalMs(): number {
    return this.checkMs
  }

  private file(): string {
    return path.join(this.o.dir, FILE)
  }

  private ours(b: MmpBlock | undefined): boolean {
    return !!b && b.nid === this.o.nid && b.pid === process.pid && b.seq >= this.floor && b.seq <= this.seq
  }

  /**
   * Write our block. `held`: the block is ours already (a heartbeat, the clean mark), so it is
   * checked again between the temp file and the rename: a node stopped (SIGSTOP) in the middle
   * of a write would otherwise rename its stale block over the one a partner wrote meanwhile.
   */
  private async write(seq: number, state: MmpBlock['state'], held: boolean): Promise<void> {
    const b: MmpBlock = {
      seq,
      state,
      node: this.o.node,
      nid: this.o.nid,
      pid: process.pid,
      time: this.o.clock.wallNow(),
      interval: this.checkMs,
    }
    // Ours from now on (a read racing the rename may find it), but not yet known to be on disk:
    // a write that fails (ENOSPC) leaves the block as it was, and that must stay ours too.
    this.seq = seq
    const t0 = this.o.clock.now()
    await writeFileAtomic(this.file(), JSON.stringify(b), held ? () => this.check() : undefined)
    // Nothing of ours on disk before the first block: nothing older to accept.
    this.floor = this.landed || seq
    this.landed = seq
    this.recordedMs = b.interval!
    // ext4 adapts the same way: a slow write stretches the interval the next block records.
    const max = Math.max(this.o.intervalMs, this.o.maxIntervalMs ?? MMP_MAX_INTERVAL_MS)
    this.checkMs = Math.min(max, Math.max(this.o.intervalMs, CHECK_MULT * (this.o.clock.now() - t0)))
  }

  private refusal(b: MmpBlock | undefined): LpError {
    if (!b) return new LpError('EBUSY', `target ${this.o.dir}: its MMP block vanished while starting; another node may be formatting or starting it`)
    const ago = ((this.o.clock.wallNow() - b.time) / 1000).toFixed(1)
    return new LpError(
      'EBUSY',
      `target ${this.o.dir} is in use by node ${b.node} (${b.nid}, pid ${b.pid}): MMP sequence moved, last update ${ago}s ago`,
    )
  }

  /** Take the target or throw EBUSY naming who holds it. */
  async acquire(): Promise<void> {
    const before = await readMmp(this.o.dir)
    // The holder's own interval, recorded in the block: its storage may be slower than ours.
    const wait = mmpWaitMs(Math.max(this.o.intervalMs, before?.interval ?? 0))
    if (before && before.state !== 'clean') {
      // Not cleanly released: someone may still be serving it, or crashed; watch for a while.
      await this.o.clock.sleep(wait)
      const again = await readMmp(this.o.dir)
      if (again && (again.seq !== before.seq || again.state !== before.state)) throw this.refusal(again)
    }
    await this.write(randomInt(1, 2 ** 31), 'active', false)
    // Another node may have raced us through the same check: make sure our sequence stayed.
    await this.o.clock.sleep(wait)
    const t0 = this.o.clock.now()
    const mine = await readMmp(this.o.dir)
    if (!mine || mine.seq !== this.seq || mine.pid !== process.pid || mine.nid !== this.o.nid) throw this.refusal(mine ?? before)
    this.checkedAt = t0
    this.schedule()
  }

  private schedule(): void {
    if (this.stopped) return
    this.timer = this.o.clock.setTimeout(() => void (this.ticking = this.tick()), this.o.intervalMs)
  }

  private async tick(): Promise<void> {
    if (this.stopped) return
    try {
      await this.verify()
      // Stopped between that read and now (SIGSTOP): read again before writing.
      await this.check()
      if (this.stopped) return
      await this.write(this.seq + 1, 'active', true)
    } catch {
      if (this.holder) return
      // A transient read or write error is not proof of a foreign node; try again next interval.
    }
    this.schedule()
  }

  async check(): Promise<void> {
    for (;;) {
      if (this.holder) throw this.fenceError()
      if (this.o.clock.now() - this.checkedAt < this.recordedMs) return
      await this.verify()
    }
  }

  /** Read the block now (one read shared by all who ask meanwhile); fence if it is not ours. */
  private verify(): Promise<void> {
    this.verifying ??= (async () => {
      const t0 = this.o.clock.now()
      const b = await readMmp(this.o.dir)
      if (this.holder) throw this.fenceError()
      if (!this.ours(b)) {
        this.holder = b ?? { seq: -1, state: 'active', node: '?', nid: '?', pid: 0, time: 0 }
        this.timer?.cancel()
        // Released already: the target is stopping anyway, nobody needs telling.
        if (!this.stopped) this.o.onForeign(this.holder)
        this.stopped = true
        throw this.fenceError()
      }
      this.checkedAt = Math.max(this.checkedAt, t0)
    })().finally(() => (this.verifying = null))
    return this.verifying
  }

  private fenceError(): LpError {
    const h = this.holder!
    return new LpError('ENODEV', `${this.o.dir}: MMP block now updated by node ${h.node} (${h.nid}, pid ${h.pid}); this node writes nothing more to it`)
  }

  /** Stop heartbeating; with `clean`, mark the block released so the next start need not wait. */
  async release(clean: boolean): Promise<void> {
    this.stopped = true
    this.timer?.cancel()
    // A heartbeat being written now must not land after (and over) the clean mark.
    await this.ticking
    // Only over our own block: a node resumed after its partner took over must not mark it clean.
    // Refused (fenced meanwhile, even between temp file and rename) or failed, the block stays
    // as it is, and the next start waits as after a crash: the stop itself goes on.
    if (clean) await this.check().then(() => this.write(this.seq + 1, 'clean', true)).catch(() => undefined)
  }
}

export async function mmpExists(dir: string): Promise<boolean> {
  try {
    await fsp.access(path.join(dir, FILE))
    return true
  } catch {
    return false
  }
}
