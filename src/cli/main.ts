import { Command, CommanderError } from 'commander'
import { registerClientCommands } from './client.js'
import { registerServerCommands } from './server.js'
import { registerClusterCommands } from './cluster.js'
import { registerDemoCommand } from './demo.js'
import { registerBenchCommand, registerSelftestCommand } from './bench.js'
import { registerAdminCommands } from './admin.js'
import { registerLfsckCommand } from './lfsck.js'
import { registerTunefsCommand } from './tunefs.js'
import { registerInstallCommand } from './install.js'
import { registerHaCommands } from './ha.js'
import { UsageError } from './errors.js'

/**
 * `lproxy`: parses and dispatches, nothing more. Every failure ends as one line on stderr
 * naming what was wrong, and a non-zero exit: 2 for a command line that makes no sense, 1 for
 * a failure while carrying it out.
 */
const EX_USAGE = 2
const program = new Command('lproxy')
  .description('Lustre-like resilient I/O proxy: targets, failover, and a FUSE client')
  .version('0.1.0')
  .exitOverride()
  .configureOutput({ outputError: (str, write) => write(`lproxy: ${str.replace(/^error: /, '').trimEnd()} (see 'lproxy --help')\n`) })

registerServerCommands(program)
registerTunefsCommand(program)
registerClientCommands(program)
registerClusterCommands(program)
registerDemoCommand(program)
registerBenchCommand(program)
registerSelftestCommand(program)
registerAdminCommands(program)
registerLfsckCommand(program)
registerInstallCommand(program)
registerHaCommands(program)

try {
  await program.parseAsync(process.argv)
} catch (e) {
  // --help and --version end here too, with commander's 0.
  if (e instanceof CommanderError) process.exit(e.exitCode === 0 ? 0 : EX_USAGE)
  const msg = e instanceof Error ? e.message : String(e)
  process.stderr.write(`lproxy: ${msg}\n`)
  process.exit(e instanceof UsageError ? EX_USAGE : 1)
}
