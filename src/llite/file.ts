import type { Layout } from '../protocol/ops.js'
import type { ReadAhead } from './readahead.js'

export const O_ACCMODE = 0o3
export const O_RDONLY = 0
export const O_WRONLY = 1
export const O_APPEND = 0o2000
export const O_EXCL = 0o200
export const O_TRUNC = 0o1000

/** An open file: its FID and layout, the MDT's open handle, its read-ahead state. */
export class OpenFile {
  ra: ReadAhead | null = null

  constructor(
    readonly fd: number,
    readonly fid: number,
    public layout: Layout | undefined,
    readonly flags: number,
    readonly handle: string,
  ) {}
}
