import type { Command } from 'commander'
import { command, print } from './server.js'

/** What Pacemaker needs of lproxy: a status with OCF exit codes, the agents, the fence agent. */
export function registerHaCommands(program: Command): void {
  command(program, 'target-status', 'whether the target in <dir> is served here: exit 0 running, 7 stopped, 1 error (OCF codes)')
    .argument('<dir>', 'target directory')
    .option('--nid <nid>', 'running here means served by the node on this NID')
    .action(async (dir: string, o: { nid?: string }) => {
      const { targetStatus } = await import('../ha/status.js')
      const s = await targetStatus(dir, o.nid)
      print([s.line])
      process.exitCode = s.code
    })

  const ha = program.command('ha').description('Pacemaker integration: agents for a site running lproxy targets under an HA manager')
  command(ha, 'install-agents', 'install ocf:lproxy:target and fence_lproxy (under /usr/lib/ocf and /usr/sbin)')
    .option('--root <dir>', 'install under this root instead of /', '/')
    .action(async (o: { root: string }) => {
      const { installAgents } = await import('../ha/install.js')
      print((await installAgents(o.root)).map((f) => `installed ${f}`))
    })

  command(ha, 'fence-agent', 'fence_lproxy itself (fence-agents options; key=value on stdin when none are given)')
    .helpOption(false)
    .allowUnknownOption()
    .argument('[args...]')
    .action(async (args: string[]) => process.exit(await runFenceAgent(args)))
}

async function runFenceAgent(args: string[]): Promise<number> {
  try {
    const { fence, parseArgv, parseStdin, usage } = await import('../ha/fence.js')
    const o = args.length ? parseArgv(args) : parseStdin(await readStdin(), (m) => process.stderr.write(m + '\n'))
    if (o.help) return print([usage()]), 0
    if (o.version) return print(['0.1.0']), 0
    const r = await fence(o)
    print(r.out)
    return r.code
  } catch (e) {
    process.stderr.write(`fence_lproxy: ${(e as Error).message}\n`)
    return 1
  }
}

async function readStdin(): Promise<string> {
  const chunks: Buffer[] = []
  for await (const c of process.stdin) chunks.push(c as Buffer)
  return Buffer.concat(chunks).toString('utf8')
}
