import type { Command } from 'commander'
import type { LocalCluster } from '../cluster/local.js'
import { CLIENT } from '../cluster/netns.js'
import { UsageError } from './errors.js'
import { command, print } from './server.js'

/**
 * The netns cluster's network faults that move nothing: a cut between a node (or the client)
 * and one peer, a lossy or slow link, and `cluster heal` (logic in src/cluster/partition.ts).
 */
export interface NetFaultCli {
  dir: string
  from?: string
  loss?: string
  delay?: number
}

/** Whether `cluster fail` was asked for a network fault only (no takeover follows it). */
export function isNetFaultOnly(what: string, o: NetFaultCli): boolean {
  return what === CLIENT || o.from !== undefined || o.loss !== undefined || o.delay !== undefined
}

/** The local cluster in `dir`, its code loaded by the command that needs it (the CLI starts lighter). */
export async function openCluster(dir: string): Promise<LocalCluster> {
  return (await import('../cluster/local.js')).LocalCluster.open(dir)
}

export async function netFault(what: string, o: NetFaultCli & { partition?: boolean }): Promise<void> {
  const lc = await openCluster(o.dir)
  const { cutLink, sickenLink } = await import('../cluster/partition.js')
  const sick = o.loss !== undefined || o.delay !== undefined
  if (sick && (o.partition || o.from !== undefined)) throw new UsageError('cluster fail: --loss/--delay make a link sick; --partition and --from cut it')
  if (!sick && !o.partition) throw new UsageError(`cluster fail ${what}: say what happens to its link (--partition [--from PEER], --loss P, --delay MS)`)
  if (sick) {
    const loss = o.loss === undefined ? undefined : lossArg(o.loss)
    print([await sickenLink(lc, what, { loss, delayMs: o.delay })])
  } else {
    print([await cutLink(lc, what, o.from)])
  }
}

function lossArg(v: string): number {
  if (!/^\d+(\.\d+)?%?$/.test(v) || Number(v.replace('%', '')) > 100) throw new UsageError(`invalid --loss '${v}': a percentage from 0 to 100`)
  return Number(v.replace('%', '')) / 100
}

export function registerHeal(cluster: Command, dirOption: (c: Command) => Command): void {
  dirOption(command(cluster, 'heal', "restore a node's (or the client's) link after fail --partition/--loss/--delay, and resume it if hung"))
    .argument('<node>', `mds1, mds2, oss1, oss2 or ${CLIENT}`)
    .action(async (node: string, o: { dir: string }) => {
      const { healLink } = await import('../cluster/partition.js')
      print(await healLink(await openCluster(o.dir), node))
    })
}
