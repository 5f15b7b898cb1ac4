import { promises as fsp } from 'node:fs'
import path from 'node:path'
import { mountFs, umountFs, type MountOptions } from '../../client/mount.js'
import { netnsOf } from '../../common/netns.js'
import { cmdline } from '../../cluster/proc.js'
import { callJsonSocket } from '../../common/jsonsock.js'
import { clientSocket } from '../../common/rundir.js'
import { Remounts } from './remounts.js'
import type { BenchFs, ImportState, Probe } from './types.js'

/**
 * An lproxy mount: its control socket gives the imports' states and replay counters, and a
 * remount (unmount, then mount again with the daemon's own arguments) empties its caches.
 */
const STATUS_MS = 2000

interface Status {
  pid: number
  imports: ImportState[]
}

export class LproxyMount implements BenchFs {
  readonly name = 'lproxy'
  /** Replay counters of the daemons that remounts ended. */
  private readonly ended = { requests: 0, bytes: 0 }
  private readonly remounts = new Remounts()

  constructor(
    readonly mountpoint: string,
    readonly description: string,
    /** Stripe count of the bench's directory: -1 spreads every file over every OST. */
    private readonly stripeCount: number,
  ) {}

  private status(): Promise<Status> {
    return callJsonSocket<Status>(clientSocket(this.mountpoint), { cmd: 'status' }, STATUS_MS)
  }

  async prepare(dir: string): Promise<void> {
    await fsp.mkdir(dir, { recursive: true })
    const layout = { stripe_count: this.stripeCount, stripe_size: 1 << 20, stripe_offset: -1 }
    await callJsonSocket(clientSocket(this.mountpoint), { cmd: 'setstripe', path: '/' + path.relative(this.mountpoint, dir), layout }, STATUS_MS)
  }

  async remount(): Promise<string> {
    await this.remounts.run(this.name, () => this.mountAgain())
    return 'remounted (new mount daemon)'
  }

  private async mountAgain(): Promise<void> {
    const st = await this.status()
    const args = await daemonArgs(st.pid)
    for (const i of st.imports) {
      this.ended.requests += i.replayed_requests
      this.ended.bytes += i.replayed_bytes
    }
    await umountFs(this.mountpoint)
    await mountFs(args)
  }

  async probe(): Promise<Probe> {
    const st = await this.status()
    return { pid: st.pid, imports: st.imports }
  }

  async replayed(): Promise<{ requests: number; bytes: number }> {
    const now = (await this.status()).imports
    return {
      requests: now.reduce((a, i) => a + i.replayed_requests, this.ended.requests),
      bytes: now.reduce((a, i) => a + i.replayed_bytes, this.ended.bytes),
    }
  }

  /** The mount stays: the cluster's teardown, or its owner, unmounts it. */
  async close(): Promise<void> {
    await this.remounts.close()
  }
}

/** The arguments a mount daemon was started with (src/client/mount.ts spawns it with these flags). */
async function daemonArgs(pid: number): Promise<MountOptions> {
  const argv = await cmdline(pid)
  const flag = (name: string) => {
    const i = argv.indexOf(name)
    if (i < 0 || i + 1 >= argv.length) throw new Error(`cannot remount: the mount daemon (pid ${pid}) has no ${name} argument`)
    return argv[i + 1]!
  }
  return {
    mgsnode: flag('--mgsnode'),
    mountpoint: flag('--mountpoint'),
    options: JSON.parse(flag('--options')) as string[],
    log: flag('--log'),
    port: Number(flag('--port')),
    // A netns cluster's client comes back in the namespace it ran in.
    netns: await netnsOf(pid),
  }
}
