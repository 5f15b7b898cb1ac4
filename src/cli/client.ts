import { Option, type Command } from 'commander'
import { callJsonSocket } from '../common/jsonsock.js'
import { mountOf } from '../ctl/find.js'
import type { MdtAttr } from '../protocol/ops.js'
import { DEFAULT_PORT } from '../protocol/nid.js'
import { intParser, portParser, stripeCountParser } from './parse.js'
import { command } from './server.js'
import { parseSize } from './size.js'

/** Client-side commands: mount, umount, and lfs's setstripe / getstripe. */
export function registerClientCommands(program: Command): void {
  command(program, 'mount', 'mount a filesystem (like mount -t lustre); returns once the mount answers')
    .requiredOption('--mgsnode <nids>', "MGS NIDs, failover NIDs separated by ':' (e.g. mds16@tcp0:mds17@tcp0)")
    .option('-o, --options <opts>', 'comma-separated mount options: timeout=N, noir, actimeo=S, max_dirty_mb=N, max_unstable_mb=N, max_pages_per_rpc=N, max_rpcs_in_flight=N, max_read_ahead_per_file_mb=N, max_read_ahead_mb=N, fuse=native|libfuse2, keyfile=PATH (the shared key), tls,ca=PATH,cert=PATH,key=PATH (mutual TLS to every node), metrics=ADDR:PORT', '')
    .option('--port <port>', 'the filesystem-wide port of the servers', portParser, DEFAULT_PORT)
    .option('--log <file>', "the mount daemon's pino JSON log")
    .argument('<mountpoint>')
    .action(async (mountpoint: string, o: { mgsnode: string; options: string; port: number; log?: string }) => {
      const { mountFs } = await import('../client/mount.js')
      const info = await mountFs({ mgsnode: o.mgsnode, mountpoint, options: o.options ? [o.options] : [], port: o.port, log: o.log })
      for (const w of info.warnings) process.stderr.write(`lproxy: warning: ${w}\n`)
    })

  command(program, 'umount', 'unmount a filesystem: flush, disconnect from the targets, stop the mount daemon')
    .argument('<mountpoint>')
    .action(async (mountpoint: string) => (await import('../client/mount.js')).umountFs(mountpoint))

  command(program, 'setstripe', "set a directory's default layout for new files (like lfs setstripe)")
    .option('-c, --stripe-count <n>', 'stripes per file; -1 = every OST', stripeCountParser, 1)
    .option('-S, --stripe-size <size>', 'bytes per stripe chunk (multiple of 64k)', '1M')
    .option('-i, --stripe-index <ost>', 'OST index of the first stripe; -1 = round-robin', intParser(-1, 0xffff), -1)
    .addOption(new Option('-d, --delete', 'remove the default layout').conflicts(['stripeCount', 'stripeSize', 'stripeIndex']))
    .argument('<dir>')
    .action(async (dir: string, o: { stripeCount: number; stripeSize: string; stripeIndex: number; delete?: boolean }) => {
      const layout = o.delete ? null : { stripe_count: o.stripeCount, stripe_size: parseSize(o.stripeSize, 'stripe size'), stripe_offset: o.stripeIndex }
      const m = await mountOf(dir)
      await callJsonSocket(m.socket, { cmd: 'setstripe', path: m.rel, layout })
    })

  command(program, 'getstripe', 'show the layout of a file, or the default layout of a directory (like lfs getstripe)')
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
