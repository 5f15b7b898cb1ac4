import { execFile } from 'node:child_process'
import { promisify } from 'node:util'
import { parseNid } from '../protocol/nid.js'
import type { LocalCluster } from './local.js'
import { CLIENT, CLIENT_HOST, existingNs, ip, NODE_IF, nsName, switchNs, switchPort } from './netns.js'
import { procState, signal } from './proc.js'

/**
 * Network faults of the netns cluster, its processes untouched:
 * - a partition of a node from everybody: its switch port goes down, as a pulled cable or a
 *   dead switch port would (both directions at once, nothing for a firewall to keep state on,
 *   and the node's own side sees only a lost carrier);
 * - a cut between one node and one peer (a client from one OSS): a classic BPF filter on the
 *   node's interface, both ways, drops IPv4 to and from that address only (iptables is not
 *   installed here and the kernel has no tc drop action, but cls_bpf in direct-action mode is);
 * - a sick link: the same filter drops a share of the packets at random (BPF's random
 *   ancillary load), both ways; a delay needs tc netem, where the kernel has it.
 * `heal` undoes all of it, and resumes a node stopped with `fail --hang`.
 */
export interface SickLink {
  /** Share of packets lost each way, 0..1. */
  loss?: number
  delayMs?: number
}

const run = promisify(execFile)

/** TC_ACT_SHOT and TC_ACT_OK, what a direct-action classifier returns. */
const DROP = 2
const PASS = 0
/** SKF_AD_OFF + SKF_AD_RANDOM, as an unsigned 32-bit load offset. */
const LOAD_RANDOM = 2 ** 32 - 4096 + 56
/** Offsets in an Ethernet frame: the ethertype, the IPv4 source and destination addresses. */
const ETHERTYPE = 12
const IP_SRC = 26
const IP_DST = 30

type Insn = [code: number, jt: number, jf: number, k: number]

/** An IPv4 packet (to or from `addr` when given) is dropped with probability `share`. */
export function dropProgram(share: number, match?: { offset: number; addr: string }): string {
  const body: Array<Insn | ((toPass: number) => Insn)> = [[0x28, 0, 0, ETHERTYPE], (p) => [0x15, 0, p, 0x0800]]
  if (match) body.push([0x20, 0, 0, match.offset], (p) => [0x15, 0, p, ipToInt(match.addr)])
  if (share < 1) body.push([0x20, 0, 0, LOAD_RANDOM], (p) => [0x35, p, 0, Math.floor(share * 2 ** 32)])
  body.push([0x06, 0, 0, DROP])
  // Every jump's far branch lands on the final "pass" right after the body.
  const insns = body.map((x, i) => (typeof x === 'function' ? x(body.length - i - 1) : x))
  insns.push([0x06, 0, 0, PASS])
  return [insns.length, ...insns.map((i) => i.join(' '))].join(',')
}

function ipToInt(addr: string): number {
  return addr.split('.').reduce((n, o) => n * 256 + Number(o), 0)
}

/** A node's (or the client's) IPv4 address in the netns cluster. */
export function addressOf(lc: LocalCluster, node: string): string {
  if (node === CLIENT) return `${lc.cf.net}.${CLIENT_HOST}`
  if (!lc.cf.nodes[node]) throw new Error(`'${node}' is neither a node (${lc.nodeNames.join(', ')}) nor ${CLIENT}`)
  return parseNid(lc.nid(node)).host
}

function nsOf(lc: LocalCluster, node: string): string {
  if (lc.cf.netns === undefined) throw new Error(`the cluster in ${lc.dir} runs on loopback: network faults need 'lproxy cluster up --netns'`)
  addressOf(lc, node)
  return nsName(lc.cf.netns, node)
}

async function tc(ns: string, args: string[]): Promise<void> {
  try {
    await run('tc', ['-n', ns, ...args])
  } catch (e) {
    const err = e as { stderr?: string; message: string }
    throw new Error(`tc -n ${ns} ${args.join(' ')}: ${(err.stderr ?? err.message).trim()}`)
  }
}

async function filterBothWays(ns: string, dev: string, program: (dir: 'egress' | 'ingress') => string): Promise<void> {
  await tc(ns, ['qdisc', 'replace', 'dev', dev, 'clsact'])
  for (const dir of ['egress', 'ingress'] as const) await tc(ns, ['filter', 'add', 'dev', dev, dir, 'bpf', 'da', 'bytecode', program(dir)])
}

/** Cut `node` off the network, or (with `peer`) from that one peer only. */
export async function cutLink(lc: LocalCluster, node: string, peer?: string): Promise<string> {
  const ns = nsOf(lc, node)
  if (peer === undefined) {
    await ip(['-n', switchNs(lc.cf.netns!), 'link', 'set', switchPort(node), 'down'])
    return `${node}'s link cut (switch port ${switchPort(node)} down), its process lives on`
  }
  if (peer === node) throw new Error(`cannot cut ${node} from itself`)
  const addr = addressOf(lc, peer)
  await filterBothWays(ns, NODE_IF, (dir) => dropProgram(1, { offset: dir === 'egress' ? IP_DST : IP_SRC, addr }))
  return `${node} cut from ${peer} (${addr}) only, both ways`
}

/** Loss and delay on `node`'s link, both ways. */
export async function sickenLink(lc: LocalCluster, node: string, s: SickLink): Promise<string> {
  const ns = nsOf(lc, node)
  const sw = switchNs(lc.cf.netns!)
  const said: string[] = []
  if (s.delayMs) {
    // Half each way, so that a round trip takes the delay asked for.
    for (const [n, dev] of [[ns, NODE_IF], [sw, switchPort(node)]] as const) {
      await tc(n, ['qdisc', 'replace', 'dev', dev, 'root', 'netem', 'delay', `${s.delayMs / 2}ms`]).catch((e: Error) => {
        throw new Error(`--delay needs tc netem, which this kernel lacks (${e.message})`)
      })
    }
    said.push(`${s.delayMs} ms round-trip delay`)
  }
  if (s.loss) {
    await filterBothWays(ns, NODE_IF, () => dropProgram(s.loss!))
    said.push(`${(s.loss * 100).toFixed(1)}% loss each way`)
  }
  return `${node}'s link made sick: ${said.join(', ') || 'nothing asked'}`
}

/** Restore `node`'s link, drop its filters and delays, resume it if it was stopped; safe to repeat. */
export async function healLink(lc: LocalCluster, node: string): Promise<string[]> {
  const ns = nsOf(lc, node)
  const sw = switchNs(lc.cf.netns!)
  const done: string[] = []
  await ip(['-n', sw, 'link', 'set', switchPort(node), 'up'])
  done.push(`${node}'s link up`)
  for (const [n, dev, kind] of [[ns, NODE_IF, 'clsact'], [ns, NODE_IF, 'root'], [sw, switchPort(node), 'root']] as const) {
    // "No such qdisc" (nothing to undo) is what a healthy link answers.
    if (await tc(n, ['qdisc', 'del', 'dev', dev, kind]).then(() => true, () => false)) done.push(`${kind} qdisc removed from ${dev} in ${n}`)
  }
  if (node !== CLIENT) {
    for (const pid of await lc.nodePids(node)) {
      if ((await procState(pid)) !== 'stopped') continue
      signal(pid, 'SIGCONT')
      done.push(`${node} (pid ${pid}) resumed (SIGCONT)`)
    }
  }
  return done
}

/** What ails a link now: cut (switch port down), filtered (a cut from a peer, loss), delayed, ok; none while the cluster is down. */
export type LinkState = 'ok' | 'cut' | 'filtered' | 'delayed' | 'none'

export async function linkState(lc: LocalCluster, node: string): Promise<LinkState> {
  const ns = nsOf(lc, node)
  if (!(await existingNs()).includes(ns)) return 'none'
  const port = await ip(['-n', switchNs(lc.cf.netns!), '-o', 'link', 'show', switchPort(node)])
  if (!/[<,]UP[,>]/.test(port)) return 'cut'
  const qdiscs = (await run('tc', ['-n', ns, 'qdisc', 'show', 'dev', NODE_IF])).stdout
  if (/qdisc clsact/.test(qdiscs)) return 'filtered'
  return /qdisc netem/.test(qdiscs) ? 'delayed' : 'ok'
}
