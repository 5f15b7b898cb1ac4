import { totalLength } from '../common/chunks.js'
import type { Layout } from '../protocol/ops.js'
import type { ReadAheadBudget } from './rabudget.js'
import type { ReadAhead } from './readahead.js'

export const O_ACCMODE = 0o3
export const O_RDONLY = 0
export const O_WRONLY = 1
export const O_APPEND = 0o2000
export const O_EXCL = 0o200
export const O_TRUNC = 0o1000

/** Open flags that write: only a handle opened so has data of its own to write back, and errors of it to hear at close. */
export const writes = (flags: number): boolean => (flags & O_ACCMODE) !== O_RDONLY

/** An open file: its FID and layout, the MDT's open handle, its read-ahead state. */
export class OpenFile {
  ra: ReadAhead | null = null
  private wholeData: Buffer[] | undefined

  constructor(
    readonly fd: number,
    readonly fid: number,
    public layout: Layout | undefined,
    readonly flags: number,
    readonly handle: string,
    /** The mount's read-ahead budget, which the bytes a handle keeps count against. */
    private readonly budget: ReadAheadBudget,
  ) {}

  /** The whole file, read with the open (a small one): what the file had then, as read-ahead's chunks are. */
  get whole(): Buffer[] | undefined {
    return this.wholeData
  }

  /** Keep the file read whole with the open, if the budget has room (else its reads go to the OST). */
  keepWhole(data: Buffer[]): void {
    if (this.budget.take(totalLength(data))) this.wholeData = data
  }

  /** The file changed under us, its OST was lost, or the handle is closed: what was read before goes. */
  dropReadData(): void {
    this.ra?.invalidate()
    if (this.wholeData) this.budget.give(totalLength(this.wholeData))
    this.wholeData = undefined
  }

  get writable(): boolean {
    return writes(this.flags)
  }
}
