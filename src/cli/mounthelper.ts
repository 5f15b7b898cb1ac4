import { Command, CommanderError } from 'commander'
import { mountFs } from '../client/mount.js'
import { parseOptions } from '../client/options.js'
import { parseMountSource } from '../client/source.js'
import { DEFAULT_PORT } from '../protocol/nid.js'
import { LpError } from '../protocol/errno.js'

/**
 * `mount.lproxy SOURCE DIR [-sfnv] [-o OPTS]`: the helper mount(8) runs for `-t lproxy` (and
 * for fstab lines of type lproxy), as mount.lustre is for Lustre. Its exit codes are mount(8)'s:
 * 1 a wrong invocation, 32 a mount that failed.
 */
const EX_USAGE = 1
const EX_FAIL = 32

/** Options for the helper itself, not for the mount daemon. */
const HELPER_KEYS = new Set(['port', 'log'])

interface HelperOpts {
  options?: string
  sloppy?: boolean
  fake?: boolean
  verbose?: boolean
  namespace?: string
}

class HelperUsage extends Error {}

async function run(source: string, dir: string, o: HelperOpts): Promise<void> {
  if (o.namespace) throw new HelperUsage('-N (mount namespaces) is not supported')
  let src
  try {
    src = parseMountSource(source)
  } catch (e) {
    throw new HelperUsage((e as Error).message)
  }
  let port = DEFAULT_PORT
  let log: string | undefined
  const options: string[] = []
  for (const item of (o.options ?? '').split(',').filter(Boolean)) {
    const [k, v] = item.split('=', 2) as [string, string | undefined]
    if (!HELPER_KEYS.has(k)) {
      // -s (sloppy): mount(8) asks to drop what the filesystem does not know rather than fail.
      if (o.sloppy && !known(item)) continue
      options.push(item)
    } else if (k === 'port') {
      port = Number(v)
      if (!Number.isInteger(port) || port < 1 || port > 65535) throw new HelperUsage(`mount option '${item}': port is an integer from 1 to 65535`)
    } else {
      if (!v) throw new HelperUsage(`mount option '${item}': log=FILE`)
      log = v
    }
  }
  try {
    parseOptions(options)
  } catch (e) {
    throw new HelperUsage((e as Error).message)
  }
  if (o.verbose) process.stderr.write(`mount.lproxy: mounting ${src.mgsnode}:/${src.fsname} on ${dir} (port ${port}, options ${options.join(',') || '-'})\n`)
  // -f (fake): everything but the mount itself.
  if (o.fake) return
  const info = await mountFs({ mgsnode: src.mgsnode, fsname: src.fsname, mountpoint: dir, options: [options.join(',')], port, log })
  for (const w of info.warnings) process.stderr.write(`mount.lproxy: warning: ${w}\n`)
}

function known(item: string): boolean {
  try {
    parseOptions([item])
    return true
  } catch (e) {
    if (e instanceof LpError) return false
    throw e
  }
}

const program = new Command('mount.lproxy')
  .description("mount(8)'s helper for lproxy: mount -t lproxy mgsnode[:mgsnode]:/fsname DIR")
  .argument('<source>', 'mgsnode[:mgsnode]:/fsname, e.g. 10.0.0.1@tcp:10.0.0.2@tcp:/spfs')
  .argument('<dir>', 'mount point')
  .option('-o, --options <opts>', "mount options: lproxy's (timeout=N, noir, actimeo=S, ...), port=N, log=FILE, mount(8)'s generic ones")
  .option('-s, --sloppy', 'drop options lproxy does not know instead of failing')
  .option('-f, --fake', 'check everything, mount nothing')
  .option('-n, --no-mtab', 'no /etc/mtab to write (accepted; there is none)')
  .option('-v, --verbose', 'say what is mounted')
  .option('-N, --namespace <ns>', 'mount namespace (not supported)')
  .option('-t, --type <type>', 'filesystem type (lproxy or fuse.lproxy; accepted)')
  .exitOverride()
  .configureOutput({ outputError: (str, write) => write(`mount.lproxy: ${str.replace(/^error: /, '')}`) })
  .action(run)

try {
  await program.parseAsync(process.argv)
} catch (e) {
  if (e instanceof CommanderError) process.exit(e.exitCode === 0 ? 0 : EX_USAGE)
  process.stderr.write(`mount.lproxy: ${e instanceof Error ? e.message : String(e)}\n`)
  process.exit(e instanceof HelperUsage ? EX_USAGE : EX_FAIL)
}
