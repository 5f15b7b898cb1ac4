import { promises as fsp } from 'node:fs'
import type { BenchFs } from './fs/types.js'

/**
 * Before a read: the kernel's page cache dropped (the files were fsynced, so their pages are
 * clean) and the client remounted, so that the data come from the servers. No global
 * sync(2): another FUSE mount on the machine that hangs would hang it.
 */
export async function freshCaches(fs: BenchFs): Promise<string> {
  const dropped = await fsp.writeFile('/proc/sys/vm/drop_caches', '3').then(
    () => 'kernel caches dropped',
    (e: Error) => `kernel caches NOT dropped (${e.message})`,
  )
  return `${dropped}; ${await fs.remount()}`
}
