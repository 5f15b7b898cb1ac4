import { promises as fsp } from 'node:fs'
import path from 'node:path'
import { randomInt } from 'node:crypto'
import type { Clock, Timer } from '../../common/clock.js'
import { readJson, writeFileAtomic } from '../../common/fsutil.js'
import { LpError } from '../../protocol/errno.js'

/**
 * Multiple-mount protection (ext4 MMP): the serving node bumps a sequence number in the
 * target's `mmp` block every interval; a node that wants the target waits long enough to see
 * whether anyone is still bumping it, and a serving node that finds a foreign sequence stops.
 */
export interface MmpBlock {
  seq: number
  state: 'active' | 'clean'
  node: string
  nid: string
  pid: number
  /** Wall-clock time of the last update, ms. */
  time: number
}

export interface MmpOptions {
  dir: string
  intervalMs: number
  clock: Clock
  node: string
  nid: string
  /** Called once when another node's sequence shows up in our block. */
  onForeign: (holder: MmpBlock) => void
}

const FILE = 'mmp'

export async function readMmp(dir: string): Promise<MmpBlock | undefined> {
  return readJson<MmpBlock>(path.join(dir, FILE))
}

export class Mmp {
  private seq = 0
  private timer: Timer | null = null
  private ticking: Promise<void> | null = null
  private stopped = false

  constructor(private readonly o: MmpOptions) {}

  private file(): string {
    return path.join(this.o.dir, FILE)
  }

  private async write(state: MmpBlock['state']): Promise<void> {
    const b: MmpBlock = {
      seq: this.seq,
      state,
      node: this.o.node,
      nid: this.o.nid,
      pid: process.pid,
      time: this.o.clock.wallNow(),
    }
    await writeFileAtomic(this.file(), JSON.stringify(b))
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
    const wait = 2 * this.o.intervalMs + Math.ceil(this.o.intervalMs / 2)
    const before = await readMmp(this.o.dir)
    if (before && before.state !== 'clean') {
      // Not cleanly released: someone may still be serving it, or crashed; watch for a while.
      await this.o.clock.sleep(wait)
      const again = await readMmp(this.o.dir)
      if (again && (again.seq !== before.seq || again.state !== before.state)) throw this.refusal(again)
    }
    this.seq = randomInt(1, 2 ** 31)
    await this.write('active')
    // Another node may have raced us through the same check: make sure our sequence stayed.
    await this.o.clock.sleep(wait)
    const mine = await readMmp(this.o.dir)
    if (!mine || mine.seq !== this.seq || mine.pid !== process.pid || mine.nid !== this.o.nid) throw this.refusal(mine ?? before)
    this.schedule()
  }

  private schedule(): void {
    if (this.stopped) return
    this.timer = this.o.clock.setTimeout(() => void (this.ticking = this.tick()), this.o.intervalMs)
  }

  private async tick(): Promise<void> {
    if (this.stopped) return
    try {
      const b = await readMmp(this.o.dir)
      if (this.stopped) return
      if (!b || b.seq !== this.seq || b.nid !== this.o.nid || b.pid !== process.pid) {
        this.stopped = true
        this.o.onForeign(b ?? { seq: -1, state: 'active', node: '?', nid: '?', pid: 0, time: 0 })
        return
      }
      this.seq += 1
      await this.write('active')
    } catch {
      // A transient read error is not proof of a foreign node; try again next interval.
    }
    this.schedule()
  }

  /** Stop heartbeating; with `clean`, mark the block released so the next start need not wait. */
  async release(clean: boolean): Promise<void> {
    this.stopped = true
    this.timer?.cancel()
    // A heartbeat being written now must not land after (and over) the clean mark.
    await this.ticking
    if (clean) {
      this.seq += 1
      await this.write('clean')
    }
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
