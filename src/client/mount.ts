/**
 * Mounting and unmounting a filesystem: `lproxy mount` starts one client daemon per
 * mountpoint and returns once the mount answers.
 */
export interface MountOptions {
  /** MGS NID spec, e.g. `127.0.1.1@tcp:127.0.1.2@tcp`. */
  mgsnode: string
  mountpoint: string
  /** `-o` options: timeout=N, noir, ... */
  options: string[]
  /** pino JSON log file of the daemon. */
  log?: string
  port?: number
}

export interface MountInfo {
  pid: number
  mountpoint: string
  socket: string
}

export async function mountFs(_o: MountOptions): Promise<MountInfo> {
  throw new Error('mount: not implemented yet')
}

export async function umountFs(_mountpoint: string): Promise<void> {
  throw new Error('umount: not implemented yet')
}
