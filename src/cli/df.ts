import type { Command } from 'commander'
import type { DfTarget } from '../ctl/df.js'
import { ctl, withMount, type MountOpt } from './mountctl.js'
import { command, print } from './server.js'

/**
 * `lproxy df`, laid out as `lfs df` does (lfs.c's UUF/CSF/RSF columns): one row per target,
 * `<mount>[MDT:0]`, then `filesystem_summary:`. An inactive OST shows only with -v.
 */
interface Usage {
  total: number
  used: number
  avail: number
}

interface DfOpts extends MountOpt {
  verbose?: boolean
  humanReadable?: boolean
  inodes?: boolean
  json?: boolean
}

/** Blocks in KiB; inodes of an OST are its objects. */
function usage(t: DfTarget, inodes: boolean): Usage | null {
  const s = t.statfs
  if (!s) return null
  if (inodes) {
    const used = s.objects ?? s.files - s.ffree
    return { total: used + s.ffree, used, avail: s.ffree }
  }
  const kb = (n: number) => Math.floor((n * s.bsize) / 1024)
  return { total: kb(s.blocks), used: kb(s.blocks - s.bfree), avail: kb(s.bavail) }
}

function sum(us: Usage[]): Usage {
  return us.reduce((a, u) => ({ total: a.total + u.total, used: a.used + u.used, avail: a.avail + u.avail }), { total: 0, used: 0, avail: 0 })
}

/** lfs -h: KiB cooked into K, M, G, ... with one decimal. */
function cooked(kb: number): string {
  const units = ['K', 'M', 'G', 'T', 'P', 'E']
  let v = kb
  let i = 0
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024
    i += 1
  }
  return `${v.toFixed(1)}${units[i]}`
}

function line(label: string, u: Usage, where: string, human: boolean): string {
  const n = (x: number) => (human ? cooked(x) : String(x)).padStart(11)
  const pct = u.used + u.avail > 0 ? Math.round((u.used * 100) / (u.used + u.avail)) : 0
  return `${label.padEnd(20)} ${n(u.total)} ${n(u.used)} ${n(u.avail)} ${`${pct}%`.padStart(4)} ${where}`
}

function dfLines(mountpoint: string, targets: DfTarget[], o: DfOpts): string[] {
  const inodes = !!o.inodes
  const human = !!o.humanReadable && !inodes
  const head = inodes ? ['Inodes', 'IUsed', 'IFree', 'IUse%'] : [human ? 'bytes' : '1K-blocks', 'Used', 'Available', 'Use%']
  const out = [`${'UUID'.padEnd(20)} ${head[0]!.padStart(11)} ${head[1]!.padStart(11)} ${head[2]!.padStart(11)} ${head[3]!.padStart(4)} Mounted on`]
  for (const t of targets) {
    const u = usage(t, inodes)
    if (u) out.push(line(t.uuid, u, `${mountpoint}[${t.type}:${t.index}]`, human))
    else if (t.state === 'inactive') {
      if (o.verbose) out.push(`${t.uuid.padEnd(20)} : inactive device`)
    } else out.push(`${t.uuid.padEnd(20)} : ${t.errno === 'EAGAIN' ? 'Resource temporarily unavailable' : t.error}`)
  }
  // Space is the OSTs'; files are the MDT's.
  const counted = targets.filter((t) => t.type === (inodes ? 'MDT' : 'OST')).map((t) => usage(t, inodes)).filter((u): u is Usage => !!u)
  out.push('', line('filesystem_summary:', sum(counted), mountpoint, human), '')
  return out
}

export function registerDfCommand(program: Command): void {
  withMount(command(program, 'df', 'space (or inodes) of every target of the mount, like lfs df'))
    .option('-v, --verbose', 'show inactive OSTs too')
    .option('-h, --human-readable', 'sizes in K, M, G, ...')
    .option('-i, --inodes', 'inodes (objects on an OST) instead of blocks')
    .option('--json', 'print JSON')
    .helpOption('--help', 'display help for command')
    .action(async (o: DfOpts) => {
      const { r } = await ctl<{ mountpoint: string; targets: DfTarget[] }>(o, { cmd: 'df' })
      if (o.json) return print([JSON.stringify(r, null, 2)])
      print(dfLines(r.mountpoint, r.targets, o))
    })
}
