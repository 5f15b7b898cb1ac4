import type { Command } from 'commander'
import { Document, isScalar, visit } from 'yaml'
import type { Device } from '../ctl/devices.js'
import type { ParamValue } from '../ctl/params.js'
import { adminCall } from '../cluster/admin.js'
import { DEFAULT_PORT, formatNid, nidList, parseNid } from '../protocol/nid.js'
import { parseTargetName, targetName } from '../protocol/names.js'
import { registerDfCommand } from './df.js'
import { ctl, withMount, type MountOpt } from './mountctl.js'
import { UsageError } from './errors.js'
import { command, mgsAccess, print, withTlsOptions, type MgsAccessOpts } from './server.js'
import { portParser } from './parse.js'

/**
 * The client admin's commands (lctl's dl, get_param, set_param, activate, deactivate; lfs df;
 * status): each asks a mount daemon through its control socket, found by itself.
 */

/** Permanent (de)activation waits for the MGS for up to obd_timeout. */
const ACTIVATE_MS = 120_000
/** A live node answers get_param at once. */
const SERVER_MS = 10_000

function json(v: unknown): void {
  print([JSON.stringify(v, null, 2)])
}

/** YAML as lctl prints its blocks: lists of plain values on one line, `[ a, b ]`. */
function yamlBlock(v: unknown): string {
  const doc = new Document(v)
  visit(doc, {
    Seq(_, n) {
      if (n.items.every((i) => isScalar(i))) n.flow = true
    },
  })
  return doc.toString({ indent: 4 }).trimEnd()
}

function paramLines(values: ParamValue[], o: { n?: boolean; N?: boolean }): string[] {
  return values.map(({ name, value }) => {
    if (o.N) return name
    const text = typeof value === 'object' && value !== null ? `\n${yamlBlock(value)}` : String(value)
    return o.n ? text.replace(/^\n/, '') : `${name}=${text}`
  })
}

export function registerAdminCommands(program: Command): void {
  for (const active of [false, true]) {
    const verb = active ? 'activate' : 'deactivate'
    const what = active
      ? 'put an OST back in service on this client (it reconnects), or everywhere with --permanent'
      : 'take an OST out of service: its I/O fails with EIO at once, new files avoid it; --permanent for every client'
    const cmd = withMount(command(program, verb, what))
      .argument('<ost>', 'the OST: ost2, OST0002 or spfs-OST0002')
      .option('--permanent', 'record it on the MGS, for every mounted client and every later mount (lctl conf_param <target>.osc.active)')
      .option('--mgsnode <nidspec>', 'with --permanent: record it on this MGS directly, no mount needed')
      .option('--port <port>', `the filesystem-wide port, with --mgsnode (default ${DEFAULT_PORT})`, portParser)
      .option('--key-file <path>', "with --mgsnode, on a filesystem with a shared key: its admin key (or the master key)")
    withTlsOptions(cmd, 'a certificate signed by the CA, for an MGS that requires TLS (with --mgsnode)')
      .action(async (ost: string, o: MountOpt & MgsAccessOpts & { permanent?: boolean; mgsnode?: string; port?: number }) => {
        if (o.mgsnode) {
          if (!o.permanent) throw new UsageError(`${verb} --mgsnode records the change on the MGS: it needs --permanent`)
          const port = o.port ?? DEFAULT_PORT
          const id = parseTargetName(ost)
          if (id?.kind !== 'ost') throw new UsageError(`'${ost}' is not an OST name (ost2, OST0002, spfs-OST0002)`)
          const { withMgs } = await import('../mgc/oneshot.js')
          const name = await withMgs(
            nidList(o.mgsnode),
            port,
            async (mgc) => {
              const n = targetName((await mgc.config()).fsname, id)
              await mgc.setParam(n, 'active', active ? '1' : '0')
              return n
            },
            undefined,
            await mgsAccess(o),
          )
          return print([`${name}: ${verb}d permanently (recorded on the MGS at ${o.mgsnode})`])
        }
        const { mountpoint, r } = await ctl<{ target: string }>(o, { cmd: verb, target: ost, permanent: !!o.permanent }, ACTIVATE_MS)
        print([`${r.target}: ${verb}d on ${mountpoint}${o.permanent ? ', and permanently (recorded on the MGS)' : ''}`])
      })
  }

  withMount(command(program, 'dl', "list the mount's devices, like lctl dl"))
    .option('--json', 'print JSON')
    .action(async (o: MountOpt & { json?: boolean }) => {
      const { r } = await ctl<Device[]>(o, { cmd: 'dl' })
      if (o.json) return json(r)
      print(r.map((d) => `${String(d.index).padStart(3)} ${d.status} ${d.type} ${d.name} ${d.uuid} ${d.refcount}`))
    })

  withMount(command(
      program,
      'get_param',
      'show parameters and stats, like lctl get_param: of a mount (osc.*.import, llite.*.stats, ...) or of a server node (obdfilter.*.stats, ...)',
      'show parameters and stats of a mount or a server node, like lctl get_param',
    ))
    .argument('<pattern...>', 'parameter names; * ? [...] glob within a component, as lctl does')
    .option('-n', 'values only')
    .option('-N', 'names only')
    .option('--json', 'print JSON')
    .option('--target <dir>', "ask the server node serving this target directory (obdfilter.*.stats, mdt.*.md_stats, *.recovery_status, *.exports), as lctl on a Lustre server")
    .option('--node <nid>', 'ask the server node on this NID, through its admin socket on this machine')
    .option('--port <port>', `the filesystem-wide port, with --node (default ${DEFAULT_PORT})`, portParser)
    .action(async (patterns: string[], o: MountOpt & ServerOpt & { n?: boolean; N?: boolean; json?: boolean }) => {
      const req = { cmd: 'get_param', patterns }
      const r = o.target || o.node ? await serverCall<ParamValue[]>(o, req) : (await ctl<ParamValue[]>(o, req)).r
      if (o.json) return json(r)
      print(paramLines(r, o))
    })

  withMount(command(program, 'set_param', 'set client parameters, like lctl set_param (osc.*.active, osc.*.max_dirty_mb, timeout, ...)'))
    .argument('<name=value...>', 'settings; names glob as get_param')
    .option('--json', 'print JSON')
    .action(async (settings: string[], o: MountOpt & { json?: boolean }) => {
      const { r } = await ctl<ParamValue[]>(o, { cmd: 'set_param', settings }, ACTIVATE_MS)
      if (o.json) return json(r)
      print(paramLines(r, {}))
    })

  withMount(command(program, 'status', "the mount's imports: target, state, current NID, requests in flight and delayed, bytes kept for replay"))
    .option('--json', 'print JSON')
    .action(async (o: MountOpt & { json?: boolean }) => {
      const { r } = await ctl<MountStatus>(o, { cmd: 'status' })
      if (o.json) return json(r)
      print(statusLines(r))
    })

  registerDfCommand(program)
}

interface ServerOpt {
  target?: string
  node?: string
  port?: number
}

/** A request to a server node: the one serving --target's directory, or the one on --node. */
async function serverCall<T>(o: MountOpt & ServerOpt, req: Record<string, unknown>): Promise<T> {
  if (o.mount || (o.target && o.node)) throw new UsageError('get_param: give one of --mount, --target and --node')
  if (o.port !== undefined && !o.node) throw new UsageError('get_param: --port goes with --node')
  if (o.target) {
    const { refByDir } = await import('../cluster/resolve.js')
    const ref = await refByDir(o.target)
    return adminCall<T>(ref.nid, ref.port, req, SERVER_MS)
  }
  return adminCall<T>(formatNid(parseNid(o.node!)), o.port ?? DEFAULT_PORT, req, SERVER_MS)
}

interface MountStatus {
  mountpoint: string
  fsname: string
  client: string
  ir: boolean
  imports: Array<{ target: string; state: string; nid: string | null; inflight: number; delayed: number; kept_bytes: number; deactive: boolean; invalid: boolean }>
}

function statusLines(s: MountStatus): string[] {
  const row = (c: string[]) =>
    [c[0]!.padEnd(16), c[1]!.padEnd(12), c[2]!.padEnd(22), c[3]!.padStart(8), c[4]!.padStart(8), c[5]!.padStart(12), c[6] ? `  ${c[6]}` : ''].join(' ').trimEnd()
  return [
    `${s.fsname} on ${s.mountpoint}: client ${s.client}, imperative recovery ${s.ir ? 'on' : 'off (noir)'}`,
    row(['TARGET', 'STATE', 'NID', 'INFLIGHT', 'DELAYED', 'KEPT_BYTES', 'FLAGS']),
    ...s.imports.map((i) =>
      row([i.target, i.state, i.nid ?? '-', String(i.inflight), String(i.delayed), String(i.kept_bytes), [i.deactive && 'deactivated', i.invalid && 'invalid'].filter(Boolean).join(',')]),
    ),
  ]
}
