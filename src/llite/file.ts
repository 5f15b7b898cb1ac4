import type { LpError } from '../protocol/errno.js'
import type { Layout } from '../protocol/ops.js'

export const O_ACCMODE = 0o3
export const O_RDONLY = 0
export const O_APPEND = 0o2000

/** An open file: its FID and layout, the MDT's open handle, and a write-back error to report. */
export class OpenFile {
  /** Reported once, by the next write, fsync or close (never dropped). */
  private error: LpError | null = null

  constructor(
    readonly fd: number,
    readonly fid: number,
    public layout: Layout | undefined,
    readonly flags: number,
    readonly handle: string,
  ) {}

  setError(e: LpError): void {
    this.error ??= e
  }

  throwPendingError(): void {
    const e = this.error
    if (!e) return
    this.error = null
    throw e
  }
}
