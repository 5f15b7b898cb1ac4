import { Command, CommanderError } from 'commander'
import { registerClientCommands } from './client.js'
import { registerServerCommands } from './server.js'
import { registerClusterCommands } from './cluster.js'
import { registerDemoCommand } from './demo.js'
import { registerBenchCommand, registerSelftestCommand } from './bench.js'
import { registerAdminCommands } from './admin.js'
import { registerLfsckCommand } from './lfsck.js'
import { registerHaCommands } from './ha.js'
import { UsageError } from './errors.js'

/**
 * `lproxy`: parses and dispatches, nothing more. Every failure ends as one line on stderr
 * naming what was wrong, and a non-zero exit.
 */
const program = new Command('lproxy')
  .description('Lustre-like resilient I/O proxy: targets, failover, and a FUSE client')
  .version('0.1.0')
  .showHelpAfterError()
  .exitOverride()

registerServerCommands(program)
registerClientCommands(program)
registerClusterCommands(program)
registerDemoCommand(program)
registerBenchCommand(program)
registerSelftestCommand(program)
registerAdminCommands(program)
registerLfsckCommand(program)
registerHaCommands(program)

try {
  await program.parseAsync(process.argv)
} catch (e) {
  if (e instanceof CommanderError) process.exit(e.exitCode)
  const msg = e instanceof Error ? e.message : String(e)
  process.stderr.write(`lproxy: ${msg}\n`)
  process.exit(e instanceof UsageError ? 2 : 1)
}
