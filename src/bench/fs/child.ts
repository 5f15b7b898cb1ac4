import { execFile, spawn, type ChildProcess } from 'node:child_process'
import { promises as fsp } from 'node:fs'
import { promisify } from 'node:util'
import { isMounted } from '../../common/mounts.js'
import { sleep } from '../../cluster/proc.js'
import { Remounts } from './remounts.js'
import type { BenchFs, Probe } from './types.js'

/**
 * A peer FUSE filesystem run in the foreground as our child (sshfs -f, bindfs -f, rclone
 * mount), so that its PID is known (for RSS) and it ends with us. Remounting starts it anew.
 */
const MOUNT_WAIT_MS = 20_000
const EXIT_WAIT_MS = 5000

export class ChildMount implements BenchFs {
  private child: ChildProcess | null = null
  private exited: Promise<void> = Promise.resolve()
  private readonly remounts = new Remounts()

  constructor(
    readonly name: string,
    readonly description: string,
    readonly mountpoint: string,
    private readonly argv: string[],
    /** Stops what the mount needs (its server), after the unmount. */
    private readonly after: () => Promise<void> = async () => undefined,
  ) {}

  async mount(): Promise<void> {
    let stderr = ''
    const child = spawn(this.argv[0]!, this.argv.slice(1), { stdio: ['ignore', 'ignore', 'pipe'] })
    child.stderr!.setEncoding('utf8').on('data', (c: string) => (stderr = (stderr + c).slice(-4096)))
    let gone = false
    this.exited = new Promise((resolve) => child.once('exit', () => ((gone = true), resolve())))
    child.once('error', (e) => (stderr += e.message))
    this.child = child
    const end = Date.now() + MOUNT_WAIT_MS
    while (!(await isMounted(this.mountpoint))) {
      if (gone || Date.now() > end) {
        await this.unmount()
        throw new Error(`${this.name}: '${this.argv.join(' ')}' did not mount ${this.mountpoint}: ${stderr.trim() || (gone ? 'it exited' : 'timed out')}`)
      }
      await sleep(50)
    }
  }

  async unmount(): Promise<void> {
    if (await isMounted(this.mountpoint)) {
      // A lazy unmount if the plain one finds it busy: the daemon must go either way.
      await promisify(execFile)('fusermount', ['-u', this.mountpoint]).catch(() => promisify(execFile)('fusermount', ['-uz', this.mountpoint]))
    }
    const child = this.child
    this.child = null
    if (!child || child.exitCode !== null || child.signalCode !== null) return
    const t = setTimeout(() => child.kill('SIGKILL'), EXIT_WAIT_MS)
    child.kill('SIGTERM')
    await this.exited
    clearTimeout(t)
  }

  async prepare(dir: string): Promise<void> {
    await fsp.mkdir(dir, { recursive: true })
  }

  async remount(): Promise<string> {
    await this.remounts.run(this.name, async () => {
      await this.unmount()
      await this.mount()
    })
    return 'remounted (new client process)'
  }

  async probe(): Promise<Probe> {
    return { pid: this.child?.pid ?? null, imports: null }
  }

  async close(): Promise<void> {
    await this.remounts.close()
    await this.unmount()
    await this.after()
  }
}
