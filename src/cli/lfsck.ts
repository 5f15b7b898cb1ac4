import { existsSync } from 'node:fs'
import type { Command } from 'commander'
import { adminCall } from '../cluster/admin.js'
import type { TargetRef } from '../cluster/resolve.js'
import type { LfsckReport } from '../server/mdt/mdt.js'
import { ctl } from './mountctl.js'
import { UsageError } from './errors.js'
import { command, mgsAccess, print, type MgsAccessOpts } from './server.js'

type Report = LfsckReport & { target: string }

/** A scan of a large filesystem takes a while: the MDT pages through every OST's objects. */
const LFSCK_MS = 600_000

/**
 * `lproxy lfsck`, as Lustre's LFSCK layout check: the MDT (found by its directory, or through
 * a mount's MGS) lists every OST's objects against its files, counting orphan objects (no
 * file names them) and dangling stripes (a live file's object the OST destroyed); --fix
 * destroys the orphans.
 */
export function registerLfsckCommand(program: Command): void {
  command(program, 'lfsck', "check OST objects against the MDT's files, like Lustre's LFSCK layout scan: orphans and dangling stripes")
    .argument('[dir]', 'the MDT target directory, served by a node on this machine')
    .option('--mount <mountpoint>', "or: the filesystem of this lproxy mount (its MDT is found through the mount's MGS)")
    .option('--key-file <path>', 'with --mount, on a filesystem with a shared key: one of its keys, to ask its MGS where the MDT is')
    .option('--fix', 'destroy the orphan objects')
    .option('--json', 'print JSON')
    .action(async (dir: string | undefined, o: MgsAccessOpts & { mount?: string; fix?: boolean; json?: boolean }) => {
      if (!dir === !o.mount) throw new UsageError('lfsck: give either an MDT target directory or --mount <mountpoint>')
      const ref = await lfsckRef(dir, o)
      const r = await adminCall<Report>(ref.nid, ref.port, { cmd: 'lfsck', ...ref.select, fix: !!o.fix }, LFSCK_MS).catch((e: Error) => {
        throw new Error(`lfsck: ${e.message}`)
      })
      if (o.json) print([JSON.stringify(r, null, 2)])
      else print(summary(r))
      // Every OST must have been scanned for the answer to mean anything.
      if (r.osts.some((x) => x.error)) process.exitCode = 1
    })
}

async function lfsckRef(dir: string | undefined, o: MgsAccessOpts & { mount?: string }): Promise<TargetRef> {
  const { refByDir, refByName } = await import('../cluster/resolve.js')
  if (dir) {
    if (!existsSync(dir)) throw new UsageError(`lfsck: ${dir} does not exist (give the MDT's target directory)`)
    return refByDir(dir)
  }
  const { r } = await ctl<{ mgsnode: string; port: number }>({ mount: o.mount }, { cmd: 'status' })
  return refByName('mdt0', r.mgsnode, r.port, await mgsAccess(o))
}

function summary(r: Report): string[] {
  const ost = (i: number) => `OST${i.toString(16).toUpperCase().padStart(4, '0')}`
  const lines = [`${r.target}: lfsck layout: ${r.files} file(s) with a layout, ${r.pending_destroys} removed file(s) whose objects' destroy is not committed yet, ${r.osts.length} OST(s)`]
  for (const x of r.osts) {
    if (x.error) {
      lines.push(`  ${ost(x.ost)}: not scanned: ${x.error}`)
      continue
    }
    const fixed = r.fixed ? `, ${x.removed} removed` : ''
    lines.push(`  ${ost(x.ost)}: ${x.objects} object(s), ${x.orphans} orphan(s) (${x.orphan_bytes} bytes)${fixed}, ${x.dangling.length} dangling`)
    for (const d of x.dangling) lines.push(`    dangling: FID ${d.fid} stripe ${d.stripe}: the OST destroyed its object`)
  }
  const orphans = r.osts.reduce((n, x) => n + x.orphans, 0)
  const dangling = r.osts.reduce((n, x) => n + x.dangling.length, 0)
  const hint = orphans && !r.fixed ? ' (--fix destroys the orphans)' : ''
  lines.push(`total: ${orphans} orphan object(s), ${dangling} dangling stripe(s)${hint}`)
  return lines
}
