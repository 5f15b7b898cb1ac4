import path from 'node:path'
import type { Command } from 'commander'
import { describe, type TargetConfig } from '../server/target/config.js'
import { collect, command, print } from './server.js'

/** `lproxy tunefs DIR`, as tunefs.lustre (logic in src/server/target/tunefs.ts). */
export function registerTunefsCommand(program: Command): void {
  command(program, 'tunefs', "change a stopped target's failover NIDs, MGS NIDs or parameters, like tunefs.lustre")
    .argument('<dir>', 'target directory (not served: refused while a node holds its MMP block)')
    .option('--failnode <nid>', 'add a failover node (repeatable)', collect)
    .option('--servicenode <nid>', 'add a node that may serve the target (repeatable)', collect)
    .option('--mgsnode <nidspec>', "add MGS NIDs, failover NIDs separated by ':'")
    .option('--param <key=value>', 'set a target parameter, as format takes them (repeatable)', collect)
    .option('--erase-params', 'forget every parameter, failover, service and MGS node first (give the ones to keep again)')
    .option('--writeconf', "regenerate the configuration: the MGS's directory forgets every target, another target's next start replaces what the MGS knows of it")
    .option('-n, --dryrun', 'print what would change, change nothing')
    .action(async (dir: string, o: TunefsCli) => {
      const { tunefs } = await import('../server/target/tunefs.js')
      const r = await tunefs({
        dir,
        failnodes: o.failnode ?? [],
        servicenodes: o.servicenode ?? [],
        mgsnode: o.mgsnode,
        params: o.param ?? [],
        eraseParams: !!o.eraseParams,
        writeconf: !!o.writeconf,
        dryrun: !!o.dryrun,
      })
      print([
        `Target:     ${describe(r.after)} in ${path.resolve(dir)}`,
        ...changes('Failnodes', r.before.failnodes, r.after.failnodes),
        ...changes('Servicenodes', r.before.servicenodes ?? [], r.after.servicenodes ?? []),
        ...changes('MGS nodes', [r.before.mgsnode ?? '(this target)'], [r.after.mgsnode ?? '(this target)']),
        ...changes('Parameters', params(r.before), params(r.after)),
        ...(o.writeconf ? [r.after.mgs ? `Writeconf:  the MGS forgot ${r.forgotten} target(s); each registers afresh at its next start` : 'Writeconf:  the next start regenerates what the MGS knows of this target'] : []),
        ...(o.dryrun ? ['(dry run: nothing written)'] : []),
      ])
    })
}

interface TunefsCli {
  failnode?: string[]
  servicenode?: string[]
  mgsnode?: string
  param?: string[]
  eraseParams?: boolean
  writeconf?: boolean
  dryrun?: boolean
}

function params(c: TargetConfig): string[] {
  return Object.entries(c.params).map(([k, v]) => `${k}=${v}`)
}

/** `Label: new` when unchanged; `Label: old -> new` when changed. */
function changes(label: string, before: string[], after: string[]): string[] {
  const b = before.join(' ') || '-'
  const a = after.join(' ') || '-'
  return [`${(label + ':').padEnd(13)}${a === b ? a : `${b} -> ${a}`}`]
}
