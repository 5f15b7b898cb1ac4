import { promises as fsp } from 'node:fs'
import { z } from 'zod'
import { formatNid, parseNid } from '../protocol/nid.js'
import { fenceDir, isPoweredOff, powerOff, powerOn } from './marker.js'
import { killMachine, runningNids } from './power.js'

/**
 * fence_lproxy, in the fence-agents convention: options as `key=value` lines on stdin when
 * there are no arguments (how Pacemaker's fencer calls it), else on the command line;
 * exit 0 done (status: on), 1 failed, 2 status: off. "Power" is that of a node of the
 * embedded cluster: off SIGKILLs it and leaves a marker that keeps it from starting; on
 * removes the marker.
 */
export const ACTIONS = ['off', 'on', 'reboot', 'status', 'list', 'monitor', 'metadata', 'validate-all'] as const
export type Action = (typeof ACTIONS)[number]

interface Opt {
  key: string
  short?: string
  long: string
  arg: boolean
  /** Names Pacemaker or older agents pass for the same option. */
  aliases?: string[]
  desc: string
  dflt?: string
  required?: boolean
}

const OPTS: Opt[] = [
  { key: 'action', short: 'o', long: 'action', arg: true, aliases: ['option'], desc: 'Fencing action', dflt: 'reboot' },
  { key: 'plug', short: 'n', long: 'plug', arg: true, aliases: ['port'], desc: 'NID of the node to fence (e.g. 10.121.0.2@tcp)', required: true },
  { key: 'fence_dir', long: 'fence-dir', arg: true, desc: 'Directory of the power-off markers, shared by every node of the machine', dflt: '/var/lib/lproxy/fence' },
  { key: 'verbose', short: 'v', long: 'verbose', arg: false, desc: 'Verbose mode' },
  { key: 'help', short: 'h', long: 'help', arg: false, desc: 'Display help and exit' },
  { key: 'version', short: 'V', long: 'version', arg: false, desc: 'Display version information and exit' },
]

/** Keys Pacemaker passes to every agent that this one has no use for. */
const IGNORED = new Set(['nodename', 'delay', 'power_timeout', 'power_wait', 'shell_timeout', 'login_timeout', 'retry_on', 'plug_separator'])

const Options = z.object({
  action: z.enum(ACTIONS),
  plug: z.string().optional(),
  fence_dir: z.string().min(1).optional(),
  verbose: z.boolean().optional(),
  help: z.boolean().optional(),
  version: z.boolean().optional(),
})
export type FenceOptions = z.infer<typeof Options>

export class FenceUsage extends Error {}

function byName(name: string): Opt | undefined {
  return OPTS.find((o) => o.key === name || o.long === name || o.aliases?.includes(name))
}

function finish(raw: Record<string, string | boolean>): FenceOptions {
  const r = Options.safeParse({ action: 'reboot', ...raw })
  if (!r.success) throw new FenceUsage(r.error.issues.map((i) => `${i.path.join('.') || 'options'}: ${i.message}`).join('; '))
  return r.data
}

/** `-o off -n NID`, `--action=off`, `--plug NID`. */
export function parseArgv(argv: string[]): FenceOptions {
  const raw: Record<string, string | boolean> = {}
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!
    const long = /^--([^=]+)(?:=(.*))?$/.exec(a)
    const opt = long ? byName(long[1]!) : /^-[A-Za-z]$/.test(a) ? OPTS.find((o) => o.short === a[1]) : undefined
    if (!opt) throw new FenceUsage(`unknown option '${a}'`)
    if (!opt.arg) raw[opt.key] = true
    else {
      const v = long?.[2] ?? argv[++i]
      if (v === undefined) throw new FenceUsage(`option '${a}' needs a value`)
      raw[opt.key] = v
    }
  }
  return finish(raw)
}

/** `key=value` lines; blank lines and `#` comments skipped; unknown keys warned about. */
export function parseStdin(text: string, warn: (msg: string) => void): FenceOptions {
  const raw: Record<string, string | boolean> = {}
  for (const line of text.split('\n')) {
    const l = line.trim()
    if (!l || l.startsWith('#')) continue
    const eq = l.indexOf('=')
    const k = eq < 0 ? l : l.slice(0, eq)
    const opt = byName(k)
    if (!opt) {
      if (!IGNORED.has(k)) warn(`Parse error: Ignoring unknown option '${l}'`)
      continue
    }
    raw[opt.key] = opt.arg ? l.slice(eq + 1) : !['0', 'false', 'no', 'off'].includes(l.slice(eq + 1).toLowerCase())
  }
  return finish(raw)
}

export interface FenceResult {
  code: 0 | 1 | 2
  out: string[]
}

function plugNid(o: FenceOptions): string {
  if (!o.plug) throw new FenceUsage(`action ${o.action} needs a plug (-n NID)`)
  return formatNid(parseNid(o.plug))
}

export async function fence(o: FenceOptions): Promise<FenceResult> {
  const dir = o.fence_dir ?? fenceDir()
  switch (o.action) {
    case 'metadata':
      return { code: 0, out: [metadata()] }
    case 'validate-all':
      if (o.plug) plugNid(o)
      return { code: 0, out: [] }
    case 'monitor':
      await fsp.mkdir(dir, { recursive: true, mode: 0o700 })
      await fsp.access(dir, fsp.constants.W_OK)
      return { code: 0, out: [] }
    case 'list': {
      const on = await runningNids()
      const off = (await fsp.readdir(dir).catch(() => [] as string[])).filter((f) => f.endsWith('.off')).map((f) => f.slice(0, -4).replace(/_([a-z]+\d*)$/, '@$1'))
      return { code: 0, out: [...new Set([...on, ...off])].sort().map((n) => `${n},`) }
    }
    case 'status': {
      const off = await isPoweredOff(plugNid(o), dir)
      return { code: off ? 2 : 0, out: [`Status: ${off ? 'OFF' : 'ON'}`] }
    }
    case 'off': {
      const nid = plugNid(o)
      // The marker first: a start racing with the kill is refused.
      await powerOff(nid, 'fence_lproxy off', dir)
      const killed = await killMachine(nid)
      return { code: 0, out: o.verbose ? [`killed ${killed.join(' ') || 'nothing (already down)'}`] : [] }
    }
    case 'on':
      await powerOn(plugNid(o), dir)
      return { code: 0, out: [] }
    case 'reboot': {
      const nid = plugNid(o)
      await powerOff(nid, 'fence_lproxy reboot', dir)
      await killMachine(nid)
      await powerOn(nid, dir)
      return { code: 0, out: [] }
    }
  }
}

export function usage(): string {
  const lines = ['Usage:', '\tfence_lproxy [options]', 'Options:']
  for (const o of OPTS) lines.push(`   ${o.short ? `-${o.short}, ` : '    '}--${o.long}${o.arg ? `=[${o.key}]` : ''}`.padEnd(36) + o.desc)
  lines.push(`Actions: ${ACTIONS.join(', ')}`, 'With no options, key=value lines are read from stdin.')
  return lines.join('\n')
}

const esc = (s: string) => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;')

/** The XML fence agents print for `-o metadata`, which Pacemaker reads to learn the agent. */
export function metadata(): string {
  const params = OPTS.flatMap((o) => {
    const one = (name: string, extra: string) =>
      [
        `\t<parameter name="${name}" unique="0" required="${o.required ? 1 : 0}"${extra}>`,
        `\t\t<getopt mixed="${o.short ? `-${o.short}, ` : ''}--${o.long}${o.arg ? `=[${o.key}]` : ''}" />`,
        `\t\t<content type="${o.arg ? 'string' : 'boolean'}"${o.dflt ? ` default="${esc(o.dflt)}"` : ''} />`,
        `\t\t<shortdesc lang="en">${esc(o.desc)}</shortdesc>`,
        '\t</parameter>',
      ].join('\n')
    return [one(o.key, o.key === 'plug' ? ' obsoletes="port"' : ''), ...(o.key === 'plug' ? [one('port', ' deprecated="1"')] : [])]
  })
  return [
    '<?xml version="1.0" ?>',
    '<resource-agent name="fence_lproxy" shortdesc="Fence agent for the nodes of an lproxy embedded cluster">',
    '<longdesc>fence_lproxy powers off a node of the lproxy embedded cluster: it SIGKILLs the server node bound to the NID given as the plug, and every process of the network namespace holding that address, then leaves a marker that keeps a node from starting on that NID until the action on. A real site uses its power fence agents (fence_ipmilan, fence_redfish, ...) instead.</longdesc>',
    '<vendor-url>https://github.com/lproxy</vendor-url>',
    '<parameters>',
    ...params,
    '</parameters>',
    '<actions>',
    '\t<action name="on" automatic="0"/>',
    ...ACTIONS.filter((a) => a !== 'on').map((a) => `\t<action name="${a}" />`),
    '</actions>',
    '</resource-agent>',
  ].join('\n')
}
