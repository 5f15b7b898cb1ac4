import { promises as fsp } from 'node:fs'
import type { BenchFs, Probe } from './types.js'

/** `--mount` of something that is not an lproxy mount: a directory, no client to remount or ask. */
export class PlainDir implements BenchFs {
  readonly name: string

  constructor(
    readonly mountpoint: string,
    readonly description: string,
  ) {
    this.name = mountpoint
  }

  async prepare(dir: string): Promise<void> {
    await fsp.mkdir(dir, { recursive: true })
  }

  async remount(): Promise<string> {
    return 'not remounted (not an lproxy mount): only the kernel caches were dropped'
  }

  async probe(): Promise<Probe> {
    return { pid: null, imports: null }
  }

  async close(): Promise<void> {}
}
