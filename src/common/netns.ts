import { promises as fsp } from 'node:fs'
import path from 'node:path'

const NETNS_DIR = '/run/netns'

/**
 * The command line that runs `cmd` in network namespace `ns` (the netns cluster's nodes and
 * client), staying in the host's mount namespace: not `ip netns exec`, which unshares the
 * mount namespace and would hide a FUSE mount from the host.
 */
export function inNetns(ns: string | undefined, cmd: string, args: string[]): [string, string[]] {
  return ns ? ['nsenter', [`--net=${path.join(NETNS_DIR, ns)}`, '--', cmd, ...args]] : [cmd, args]
}

/** The named network namespace (under /run/netns) process `pid` runs in; undefined when it shares ours. */
export async function netnsOf(pid: number): Promise<string | undefined> {
  const ino = async (p: string) => (await fsp.stat(p).catch(() => null))?.ino
  const theirs = await ino(`/proc/${pid}/ns/net`)
  if (theirs === undefined || theirs === (await ino('/proc/self/ns/net'))) return undefined
  for (const name of await fsp.readdir(NETNS_DIR).catch(() => [] as string[])) if ((await ino(path.join(NETNS_DIR, name))) === theirs) return name
  throw new Error(`process ${pid} runs in a network namespace with no name under ${NETNS_DIR}`)
}
