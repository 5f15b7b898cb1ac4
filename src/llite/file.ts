import type { Layout } from '../protocol/ops.js'

export const O_ACCMODE = 0o3
export const O_RDONLY = 0
export const O_APPEND = 0o2000

/** An open file: its FID and layout, and the MDT's open handle. */
export class OpenFile {
  constructor(
    readonly fd: number,
    readonly fid: number,
    public layout: Layout | undefined,
    readonly flags: number,
    readonly handle: string,
  ) {}
}
