/**
 * A filesystem under test, as the harness drives it: lproxy (the embedded cluster or an
 * existing mount), or one of the peers of `--compare` (sshfs, rclone, bindfs).
 */
export interface ImportState {
  target: string
  state: string
  inflight: number
  delayed: number
  kept_bytes: number
  replayed_requests: number
  replayed_bytes: number
}

export interface Probe {
  /** The client process, for its resident size. */
  pid: number | null
  /** lproxy's imports, from the mount's control socket. */
  imports: ImportState[] | null
}

export interface BenchFs {
  /** Short name in tables: lproxy, sshfs, sshfs-tuned, rclone, bindfs. */
  readonly name: string
  /** What it is and how it is mounted, for the record. */
  readonly description: string
  readonly mountpoint: string
  /** Make `dir` (on the mount) ready for the bench's files. */
  prepare(dir: string): Promise<void>
  /** Make sure the client's own caches cannot serve what is read next; what was done. */
  remount(): Promise<string>
  probe(): Promise<Probe>
  /** lproxy: requests and bytes replayed, summed over the daemons remounts went through. */
  replayed?(): Promise<{ requests: number; bytes: number }>
  /** Unmount and stop whatever was started for it (an existing mount is left mounted). */
  close(): Promise<void>
}
