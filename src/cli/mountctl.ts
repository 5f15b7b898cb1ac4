import type { Command } from 'commander'
import { callJsonSocket, SocketUnavailable } from '../common/jsonsock.js'
import { chooseMount } from '../ctl/find.js'
import { LpError } from '../protocol/errno.js'

/** Client admin commands talk to a mount daemon through its control socket, finding it by themselves. */
export interface MountOpt {
  mount?: string
}

const CTL_MS = 30_000

export function withMount(c: Command): Command {
  return c.option('--mount <mountpoint>', 'the lproxy mount to ask (default: the one the working directory is in, else the only one)')
}

/** One request to the chosen mount's daemon. */
export async function ctl<T>(o: MountOpt, req: Record<string, unknown>, timeoutMs = CTL_MS): Promise<{ mountpoint: string; r: T }> {
  const m = await chooseMount(o.mount)
  try {
    return { mountpoint: m.mountpoint, r: await callJsonSocket<T>(m.socket, req, timeoutMs) }
  } catch (e) {
    if (e instanceof SocketUnavailable) throw new LpError('ENOTCONN', `the mount daemon of ${m.mountpoint} does not answer on its control socket (${e.message})`)
    throw e
  }
}
