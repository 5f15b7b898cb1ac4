import { callJsonSocket, SocketUnavailable, SocketTimeout } from '../common/jsonsock.js'
import { nodeSocket } from '../common/rundir.js'

/**
 * The admin channel of a server node (its Unix socket, one per NID and port), and the shape
 * of what it answers. Everything that acts on a running node goes through here.
 */
export interface NodeTargetStatus {
  name: string
  kind: 'mgs' | 'mdt' | 'ost'
  instance: number
  recovering: boolean
  last_committed: number
  last_transno: number
  barrier: boolean
  clients: Array<{ uuid: string; connected: boolean; lastSeenMsAgo?: number }>
}

export interface NodeStatus {
  node: string
  nid: string
  pid: number
  port: number
  /** Whether the node's port takes TLS only. */
  tls: boolean
  mounts: Array<{ dir: string; targets: NodeTargetStatus[] }>
}

export type Probe = { state: 'up'; status: NodeStatus } | { state: 'hung' } | { state: 'down' }

/** A live node answers `status` at once; a stopped (SIGSTOP) one accepts but never answers. */
export const PROBE_MS = 1500
/** Mounting waits out MMP and opens the target; bounded so a hung node cannot block forever. */
export const MOUNT_MS = 120_000
export const UMOUNT_MS = 60_000

export function adminCall<T>(nid: string, port: number, req: Record<string, unknown>, timeoutMs: number): Promise<T> {
  return callJsonSocket<T>(nodeSocket(nid, port), req, timeoutMs)
}

export async function probeNode(nid: string, port: number): Promise<Probe> {
  try {
    return { state: 'up', status: await adminCall<NodeStatus>(nid, port, { cmd: 'status' }, PROBE_MS) }
  } catch (e) {
    if (e instanceof SocketUnavailable) return { state: 'down' }
    if (e instanceof SocketTimeout) return { state: 'hung' }
    throw e
  }
}

export function targetNames(s: NodeStatus): string[] {
  return s.mounts.flatMap((m) => m.targets.map((t) => t.name))
}
