import type { Command } from 'commander'
import { callJsonSocket } from '../common/jsonsock.js'
import { mountFs, umountFs } from '../client/mount.js'
import { mountOf } from '../ctl/find.js'
import type { MdtAttr } from '../protocol/ops.js'
import { UsageError } from './errors.js'
import { parseSize } from './size.js'

/** Client-side commands: mount, umount, and lfs's setstripe / getstripe. */
export function registerClientCommands(program: Command): void {
  program
    .command('mount')
    .description('mount a filesystem (like mount -t lustre); returns once the mount answers')
    .requiredOption('--mgsnode <nids>', "MGS NIDs, failover NIDs separated by ':' (e.g. mds16@tcp0:mds17@tcp0)")
    .option('-o, --options <opts>', 'comma-separated mount options: timeout=N, noir, actimeo=S, max_dirty_mb=N, max_unstable_mb=N, max_pages_per_rpc=N, max_rpcs_in_flight=N, max_read_ahead_per_file_mb=N, fuse=native|libfuse2, tls,ca=PATH,cert=PATH,key=PATH (mutual TLS to every node)', '')
    .option('--port <port>', 'the filesystem-wide port of the servers', '988')
    .option('--log <file>', "the mount daemon's pino JSON log")
    .argument('<mountpoint>')
    .action(async (mountpoint: string, o: { mgsnode: string; options: string; port: string; log?: string }) => {
      const port = Number(o.port)
      if (!Number.isInteger(port) || port < 1 || port > 65535) throw new UsageError(`invalid --port '${o.port}'`)
      const info = await mountFs({ mgsnode: o.mgsnode, mountpoint, options: o.options ? [o.options] : [], port, log: o.log })
      for (const w of info.warnings) process.stderr.write(`lproxy: warning: ${w}\n`)
    })

  program
    .command('umount')
    .description('unmount a filesystem: flush, disconnect from the targets, stop the mount daemon')
    .argument('<mountpoint>')
    .action(async (mountpoint: string) => umountFs(mountpoint))

  program
    .command('setstripe')
    .description("set a directory's default layout for new files (like lfs setstripe)")
    .option('-c, --stripe-count <n>', 'stripes per file; -1 = every OST', '1')
    .option('-S, --stripe-size <size>', 'bytes per stripe chunk (multiple of 64k)', '1M')
    .option('-i, --stripe-index <ost>', 'OST index of the first stripe; -1 = round-robin', '-1')
    .option('-d, --delete', 'remove the default layout')
    .argument('<dir>')
    .action(async (dir: string, o: { stripeCount: string; stripeSize: string; stripeIndex: string; delete?: boolean }) => {
      const m = await mountOf(dir)
      const count = Number(o.stripeCount)
      const index = Number(o.stripeIndex)
      if (!Number.isInteger(count) || count === 0 || count < -1) throw new UsageError(`invalid stripe count '${o.stripeCount}'`)
      if (!Number.isInteger(index) || index < -1) throw new UsageError(`invalid stripe index '${o.stripeIndex}'`)
      const layout = o.delete ? null : { stripe_count: count, stripe_size: parseSize(o.stripeSize, 'stripe size'), stripe_offset: index }
      await callJsonSocket(m.socket, { cmd: 'setstripe', path: m.rel, layout })
    })

  program
    .command('getstripe')
    .description('show the layout of a file, or the default layout of a directory (like lfs getstripe)')
    .option('--json', 'print JSON')
    .argument('<path>')
    .action(async (p: string, o: { json?: boolean }) => {
      const m = await mountOf(p)
      const a = await callJsonSocket<MdtAttr>(m.socket, { cmd: 'getstripe', path: m.rel })
      if (o.json) return void process.stdout.write(JSON.stringify(a, null, 2) + '\n')
      process.stdout.write(formatStripe(p, a))
    })
}

function formatStripe(p: string, a: MdtAttr): string {
  const lines = [p]
  if (a.type === 'dir') {
    const d = a.dir_layout
    if (!d) lines.push('stripe_count:  1 stripe_size:   1048576 pattern:       raid0 stripe_offset: -1 (filesystem default)')
    else lines.push(`stripe_count:  ${d.stripe_count} stripe_size:   ${d.stripe_size} pattern:       raid0 stripe_offset: ${d.stripe_offset}`)
    return lines.join('\n') + '\n'
  }
  const l = a.layout
  if (!l) return `${p} has no stripe info\n`
  lines.push(`lmm_stripe_count:  ${l.osts.length}`, `lmm_stripe_size:   ${l.stripe_size}`, 'lmm_pattern:       raid0', `lmm_stripe_offset: ${l.osts[0]}`)
  lines.push(`lmm_fid:           [0x200000400:0x${a.fid.toString(16)}:0x0]`)
  lines.push('\tobdidx\t\t objid\t\t stripe')
  l.osts.forEach((ost, i) => lines.push(`\t${String(ost).padStart(6)}\t${String(a.fid).padStart(14)}\t${String(i).padStart(7)}`))
  return lines.join('\n') + '\n'
}
