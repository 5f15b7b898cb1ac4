import path from 'node:path'
import { parseTargetName } from '../protocol/names.js'
import { readMmp } from '../server/target/mmp.js'
import { CLUSTER_FILE, logOf, nodeNs, readClusterFile, tlsOf, writeClusterFile, type ClusterFile } from './layout.js'
import { isNodeProcess, isSameProcess } from './proc.js'
import { startTarget } from './target.js'

/**
 * A local cluster opened from its directory: names to NIDs and directories, where each
 * target may move, starting targets on a node, and the PIDs that belong to the cluster.
 */
export interface Placement {
  target: string
  node: string
  nid: string
  pid: number
  /** Date.now() when it served. */
  at: number
}

export class LocalCluster {
  constructor(
    readonly dir: string,
    readonly cf: ClusterFile,
  ) {}

  static async open(dirArg: string): Promise<LocalCluster> {
    const dir = path.resolve(dirArg)
    const cf = await readClusterFile(dir)
    if (!cf) throw new Error(`no local cluster in ${dir} (no ${CLUSTER_FILE}); 'lproxy cluster up --dir ${dirArg}' makes one`)
    return new LocalCluster(dir, cf)
  }

  save(): Promise<void> {
    return writeClusterFile(this.dir, this.cf)
  }

  get nodeNames(): string[] {
    return Object.keys(this.cf.nodes)
  }

  get targetKeys(): string[] {
    return Object.keys(this.cf.targets)
  }

  nid(node: string): string {
    return this.cf.nodes[node]!.nid
  }

  nodeByNid(nid: string): string | undefined {
    return this.nodeNames.find((n) => this.nid(n) === nid)
  }

  /** `mdt0`, `ost1`, `spfs-OST0001`, `MGS` -> the cluster's key for that target. */
  targetKey(name: string): string | undefined {
    const id = parseTargetName(name)
    if (!id) return undefined
    const key = id.kind === 'mgs' ? 'mdt0' : `${id.kind}${id.index}`
    return this.cf.targets[key] ? key : undefined
  }

  /** Where a target goes when `node` stops serving it. */
  partner(key: string, node: string): string {
    const t = this.cf.targets[key]!
    return t.primary === node ? t.failover : t.primary
  }

  /**
   * Start targets on `node`: the first may have to start the node process, the others are
   * then mounted on it in parallel. Records the node's PID.
   */
  async startOn(node: string, keys: string[]): Promise<Placement[]> {
    const one = async (key: string): Promise<Placement> => {
      const s = await startTarget({
        dir: this.cf.targets[key]!.dir,
        nid: this.nid(node),
        name: node,
        log: logOf(this.dir, node),
        params: this.cf.params,
        netns: nodeNs(this.cf, node),
        tls: tlsOf(this.dir, this.cf, node),
      })
      this.cf.nodes[node]!.pid = s.pid
      return { target: key, node, nid: s.nid, pid: s.pid, at: Date.now() }
    }
    const [first, ...rest] = keys
    if (first === undefined) return []
    const head = await one(first)
    return [head, ...(await Promise.all(rest.map(one)))]
  }

  /** Live PIDs of the processes bound to `node`'s NID, from every place that names one. */
  async nodePids(node: string, seen: number[] = []): Promise<number[]> {
    const nid = this.nid(node)
    const mmpPids = await Promise.all(this.targetKeys.map(async (k) => {
      const b = await readMmp(this.cf.targets[k]!.dir).catch(() => undefined)
      return b && b.nid === nid ? b.pid : 0
    }))
    const out: number[] = []
    for (const p of new Set([...seen, this.cf.nodes[node]!.pid ?? 0, ...mmpPids]))
      if (p && (await isNodeProcess(p, nid))) out.push(p)
    return out
  }

  /** The mount daemon's PID if it still runs. */
  async mountPid(): Promise<number | undefined> {
    const m = this.cf.mount
    return m.pid && (await isSameProcess(m.pid, m.pidStart)) ? m.pid : undefined
  }
}
