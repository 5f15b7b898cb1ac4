/**
 * The command line that runs `cmd` in network namespace `ns` (the netns cluster's nodes and
 * client), staying in the host's mount namespace: not `ip netns exec`, which unshares the
 * mount namespace and would hide a FUSE mount from the host.
 */
export function inNetns(ns: string | undefined, cmd: string, args: string[]): [string, string[]] {
  return ns ? ['nsenter', [`--net=/run/netns/${ns}`, '--', cmd, ...args]] : [cmd, args]
}
