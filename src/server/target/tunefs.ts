import os from 'node:os'
import path from 'node:path'
import { realClock } from '../../common/clock.js'
import { LpError } from '../../protocol/errno.js'
import { NidError, nidList } from '../../protocol/nid.js'
import { forgetTargets } from '../mgs/mgs.js'
import { serverTunables } from '../tunables.js'
import { FormatError, parseParams, readConfig, writeConfig, type TargetConfig } from './config.js'
import { Mmp } from './mmp.js'

/**
 * `lproxy tunefs DIR`, as tunefs.lustre: change a formatted target's failover and MGS NIDs and
 * permanent parameters without erasing it. Like tune2fs on an MMP-protected LUN it takes the
 * target's MMP block first, so a target some node serves is refused, and no node can start it
 * while its CONFIG is rewritten.
 */
export interface TunefsOptions {
  dir: string
  failnodes: string[]
  servicenodes: string[]
  mgsnode?: string
  params: string[]
  eraseParams: boolean
  writeconf: boolean
  /** Print what would change, change nothing (tunefs.lustre --dryrun). */
  dryrun: boolean
}

export interface TunefsResult {
  before: TargetConfig
  after: TargetConfig
  /** With --writeconf on the MGS's directory: the targets it forgot. */
  forgotten: number
}

/** Node and NID the MMP block names while tunefs holds it (LNet's loopback NID: this machine). */
const HOLDER = { node: `tunefs@${os.hostname()}`.slice(0, 64), nid: '0@lo' }

export async function tunefs(o: TunefsOptions): Promise<TunefsResult> {
  const dir = path.resolve(o.dir)
  const before = await readConfig(dir)
  const after = tuned(before, o)
  if (o.dryrun) return { before, after, forgotten: 0 }
  const mmp = new Mmp({ dir, intervalMs: serverTunables(before).mmpIntervalMs, clock: realClock, ...HOLDER, onForeign: () => undefined })
  try {
    await mmp.acquire()
  } catch (e) {
    if (e instanceof LpError && e.code === 'EBUSY') throw new LpError('EBUSY', `${dir} is being served; stop it first (${e.message})`)
    throw e
  }
  let forgotten = 0
  try {
    const allowed = () => mmp.check()
    if (o.writeconf && before.mgs) forgotten = await forgetTargets(path.join(dir, 'mgs'), allowed)
    await writeConfig(dir, after, allowed)
  } finally {
    await mmp.release(true)
  }
  return { before, after, forgotten }
}

/** The CONFIG tunefs writes: additions as tunefs.lustre makes them, everything NID-like checked. */
function tuned(c: TargetConfig, o: TunefsOptions): TargetConfig {
  try {
    for (const spec of [...o.failnodes, ...o.servicenodes, ...(o.mgsnode ? [o.mgsnode] : [])]) nidList(spec)
  } catch (e) {
    if (e instanceof NidError) throw new FormatError(e.message)
    throw e
  }
  const params = parseParams(o.params)
  if (params['failover.mode'] && !c.ost && !c.mdt) throw new FormatError('failover.mode applies to an MDT or OST')
  const base = o.eraseParams ? { failnodes: [], servicenodes: [], params: {}, mgsnode: undefined } : c
  let mgsnode = base.mgsnode
  if (o.mgsnode) mgsnode = mgsnode ? joinSpecs(mgsnode, o.mgsnode) : o.mgsnode
  if (!c.mgs && !mgsnode) throw new FormatError('--erase-params removes the MGS NIDs too: give them again with --mgsnode')
  if (c.mgs && o.mgsnode) throw new FormatError('this directory holds the MGS: --mgsnode applies to the other targets')
  return {
    ...c,
    failnodes: unique([...base.failnodes, ...o.failnodes]),
    servicenodes: unique([...(base.servicenodes ?? []), ...o.servicenodes]),
    mgsnode,
    params: { ...base.params, ...params },
    // Only a target that registers has something to regenerate; the MGS forgets at once.
    writeconf: ((o.writeconf || c.writeconf) && (c.mdt || c.ost)) || undefined,
  }
}

/** NID specs joined by ':' (one group per node), without a node twice. */
function joinSpecs(a: string, b: string): string {
  return unique([...a.split(':'), ...b.split(':')]).join(':')
}

function unique(xs: string[]): string[] {
  return [...new Set(xs)]
}
