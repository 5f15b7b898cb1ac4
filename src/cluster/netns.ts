import { execFile } from 'node:child_process'
import { promisify } from 'node:util'

/**
 * The embedded cluster on a real network (`cluster up --netns`): every node and the client
 * in a network namespace of its own, each joined by a veth pair to one bridge, which lives in
 * a namespace of its own too (the "switch"), so that the host's firewall and interfaces are
 * never touched and deleting the namespaces removes every link with them.
 *
 * Names: `lpnet-<id>-<node>`, `lpnet-<id>-client`, `lpnet-<id>-sw` holding bridge `lpnetbr0`
 * and the switch ports `lpn-<node>`; each namespace sees its end as `eth0`. The id is the
 * third octet of the cluster's /24, so one /24 makes one set of names.
 */
export const CLIENT = 'client'
export const CLIENT_HOST = 100
const BRIDGE = 'lpnetbr0'
/** The node side of every veth pair, inside its namespace. */
export const NODE_IF = 'eth0'

const run = promisify(execFile)

export interface NetnsPlan {
  id: string
  net: string
  /** Node name (mds1, ..., client) -> last octet of its address. */
  hosts: Record<string, number>
}

export function netnsId(net: string): string {
  if (net.startsWith('127.')) throw new Error(`--netns needs a /24 outside 127.0.0.0/8 for its veths (e.g. 10.77.1), not ${net}`)
  return net.split('.')[2]!
}

export function nsName(id: string, node: string): string {
  return `lpnet-${id}-${node}`
}

export const switchNs = (id: string): string => nsName(id, 'sw')
export const switchPort = (node: string): string => `lpn-${node}`

export async function ip(args: string[]): Promise<string> {
  try {
    return (await run('ip', args)).stdout
  } catch (e) {
    const err = e as { stderr?: string; message: string }
    throw new Error(`ip ${args.join(' ')}: ${(err.stderr ?? err.message).trim()}`)
  }
}

export async function existingNs(): Promise<string[]> {
  return (await ip(['netns', 'list'])).split('\n').map((l) => l.split(' ')[0]!).filter(Boolean)
}

/** Creates the namespaces, bridge and links; on any failure removes what it made. */
export async function createNet(p: NetnsPlan): Promise<void> {
  const sw = switchNs(p.id)
  const taken = (await existingNs()).filter((n) => n.startsWith(`lpnet-${p.id}-`))
  if (taken.length) throw new Error(`network namespaces ${taken.join(', ')} exist already (another cluster on ${p.net}?); 'lproxy cluster down' of that cluster removes them`)
  try {
    await ip(['netns', 'add', sw])
    await ip(['-n', sw, 'link', 'add', BRIDGE, 'type', 'bridge'])
    await ip(['-n', sw, 'link', 'set', BRIDGE, 'up'])
    for (const [node, host] of Object.entries(p.hosts)) {
      const ns = nsName(p.id, node)
      await ip(['netns', 'add', ns])
      await ip(['-n', sw, 'link', 'add', switchPort(node), 'type', 'veth', 'peer', 'name', NODE_IF, 'netns', ns])
      await ip(['-n', sw, 'link', 'set', switchPort(node), 'master', BRIDGE, 'up'])
      await ip(['-n', ns, 'addr', 'add', `${p.net}.${host}/24`, 'dev', NODE_IF])
      await ip(['-n', ns, 'link', 'set', NODE_IF, 'up'])
      await ip(['-n', ns, 'link', 'set', 'lo', 'up'])
    }
  } catch (e) {
    await deleteNet(p.id).catch(() => undefined)
    throw e
  }
}

/** Deletes every namespace of the set (their veths and the bridge go with them); idempotent. */
export async function deleteNet(id: string): Promise<string[]> {
  const mine = (await existingNs()).filter((n) => n.startsWith(`lpnet-${id}-`))
  for (const ns of mine) await ip(['netns', 'del', ns])
  return mine
}
