import { existsSync } from 'node:fs'
import path from 'node:path'
import type { Command } from 'commander'
import { loadTls, tlsFiles, type TlsFiles, type TlsMaterial } from '../common/tls.js'
import { formatNid, parseNid } from '../protocol/nid.js'
import { parseTargetName } from '../protocol/names.js'
import { KEY_FILE, describe, formatTarget, parseParams, readConfig } from '../server/target/config.js'
import type { TargetRef } from '../cluster/resolve.js'
import { defaultLog } from '../cluster/layout.js'
import { isListenAddress } from '../common/listen.js'
import { UsageError } from './errors.js'
import { intParser, portParser } from './parse.js'
import { KEY_CLASSES, deriveKey, loadSigningKey, readKeyFile, writeKeyFile } from '../common/keyfile.js'
import type { MgsAccess } from '../mgc/oneshot.js'

/** Server-side admin commands, the way a Lustre admin works: format, start, stop, recovery. */
export function registerServerCommands(program: Command): void {
  const fmt = command(program, 'format', 'format a target directory, like mkfs.lustre (refuses an existing target without --reformat)')
    .argument('<dir>', 'target directory (the shared LUN)')
    .option('--fsname <name>', 'filesystem name (required), 1-8 letters, digits or _')
    .option('--mgs', 'hold the MGS (may share the directory with the MDT)')
    .option('--mdt', 'a metadata target')
    .option('--ost', 'an object storage target')
    .option('--index <n>', 'target index (the N of ostN); the MDT is index 0', intParser(0, 0xffff))
    .option('--mgsnode <nidspec>', "where the MGS is, failover NIDs separated by ':' (e.g. 127.0.1.1@tcp:127.0.1.2@tcp)")
    .option('--failnode <nid>', 'failover node of this target (repeatable)', collect)
    .option(
      '--param <key=value>',
      'target parameter, e.g. failover.mode=failout, sys.timeout=20; on an MDT root_squash=65534:65534 (root acts as that uid:gid) and nosquash_nids=10.0.0.1@tcp,*@tcp1 (NIDs whose root is not squashed) (repeatable)',
      collect,
    )
    .option('--port <port>', 'the filesystem-wide port (default 988)', portParser)
    .option('--reformat', 'erase an existing target in <dir>')
    .option('--key-file <path>', "the filesystem's master key (made there, 0600, if it does not exist): a copy goes in <dir>, and every RPC must be signed")
    .option('--gen-key', 'make a new master key in <dir> alone (then format the other targets with --key-file <dir>/auth.key)')
  fmt.action(async (dir: string, o: Record<string, unknown>) => {
    if (!o.fsname) throw new UsageError('format: --fsname is required')
    const cfg = await formatTarget({
      dir,
      fsname: String(o.fsname),
      mgs: !!o.mgs,
      mdt: !!o.mdt,
      ost: !!o.ost,
      index: o.index as number | undefined,
      mgsnode: o.mgsnode as string | undefined,
      failnodes: (o.failnode as string[] | undefined) ?? [],
      port: o.port as number | undefined,
      params: (o.param as string[] | undefined) ?? [],
      reformat: !!o.reformat,
      keyFile: o.keyFile as string | undefined,
      genKey: !!o.genKey,
    })
    const params = Object.entries(cfg.params).map(([k, v]) => `${k}=${v}`)
    print([
      `Target:     ${describe(cfg)}`,
      `Index:      ${cfg.index}`,
      `Fsname:     ${cfg.fsname}`,
      `MGS nodes:  ${cfg.mgsnode ?? '(this target)'}`,
      `Failnodes:  ${cfg.failnodes.join(' ') || '-'}`,
      `Port:       ${cfg.port}`,
      `Parameters: ${params.join(' ') || '-'}`,
      `Shared key: ${cfg.keyed ? path.join(path.resolve(dir), KEY_FILE) : "none (RPCs are not authenticated; see --key-file)"}`,
      `Directory:  ${path.resolve(dir)}`,
    ])
  })

  command(
    program,
    'key',
    "write a key derived from the filesystem's master key: fs for the clients (mount -o keyfile=), admin for configuration changes",
    "write a key derived from the filesystem's master key (fs, admin)",
  )
    .argument('<master>', "the master key file (format's --key-file, or a target directory's auth.key)")
    .argument('<out>', 'the key file to write (0600; refused if it exists)')
    .option('--class <class>', `${KEY_CLASSES.join(', ')}`, 'fs')
    .action(async (master: string, out: string, o: { class: string }) => {
      const cls = KEY_CLASSES.find((c) => c === o.class)
      if (!cls) throw new UsageError(`key: --class is one of ${KEY_CLASSES.join(', ')}`)
      await writeKeyFile(out, deriveKey(await readKeyFile(master), cls))
      print([`${out}: the ${cls} key of filesystem ${(await readKeyFile(out)).fsname}`])
    })

  const start = command(program, 'start', 'serve the target in <dir> on the node bound to --nid (started if none runs); MMP-checked')
    .argument('<dir>', 'target directory')
    .option('--nid <nid>', 'NID of the serving node (required), e.g. 127.0.1.1@tcp')
    .option('--name <name>', 'node name, for logs and MMP (default: the NID host)')
    .option('--log <file>', `pino JSON log of a new node (default ${defaultLog('<name>')}; with -f: stderr)`)
    .option('-f, --foreground', 'run the node in this process (for supervisors); stops cleanly on SIGTERM')
    .option('--param <key=value>', 'tunable for this start, e.g. sys.timeout=20, or an MDT\'s root_squash=65534:65534 and nosquash_nids=127.0.0.1@tcp (repeatable)', collect)
    .option(
      '--discard-corrupt-journal',
      'start even though the journal is damaged before its tail (a start refused with "journal damaged"): go on from the last good record; ' +
        'the transactions after it are lost, logged, and the files given up kept as journal/*.corrupt-<time>',
    )
    .option('--metrics <addr:port>', 'a new node serves /metrics (Prometheus) here; none by default')
  withTlsOptions(start, "this node's certificate, signed by the CA, with the NID's address as an IP SAN; the port then refuses plaintext")
  start.action(async (dir: string, o: { nid?: string; name?: string; log?: string; foreground?: boolean; param?: string[]; discardCorruptJournal?: boolean; metrics?: string } & TlsOpts) => {
    if (!o.nid) throw new UsageError('start: --nid is required')
    const nid = formatNid(parseNid(o.nid))
    if (o.name !== undefined && !/^[A-Za-z0-9._-]{1,64}$/.test(o.name)) throw new UsageError(`start: invalid --name '${o.name}'`)
    const params = parseParams(o.param ?? [])
    if (params['failover.mode']) throw new UsageError('start: failover.mode is chosen at format time')
    const discard = o.discardCorruptJournal === true
    if (o.metrics && !isListenAddress(o.metrics)) throw new UsageError(`start: --metrics '${o.metrics}' is not ADDR:PORT (e.g. 127.0.0.1:9100)`)
    const tls = tlsOption(o)
    if (o.foreground) return runForeground(dir, nid, o.name, o.log, params, discard, o.metrics, tls)
    const { startTarget } = await import('../cluster/target.js')
    const s = await startTarget({ dir, nid, name: o.name, log: o.log, params, discardCorruptJournal: discard, metrics: o.metrics, tls })
    print([`${s.targets.join(', ')}: ${s.already ? 'already ' : ''}serving on ${s.nid} (node ${s.node}, pid ${s.pid})`])
  })

  command(program, 'stop', 'cleanly stop the target in <dir> on whichever node serves it (soft failover); not served is not an error')
    .argument('<dir>', 'target directory')
    .option('--nid <nid>', 'stop it only if the node on this NID serves it')
    .action(async (dir: string, o: { nid?: string }) => {
      const { stopTarget } = await import('../cluster/target.js')
      const r = await stopTarget(dir, o.nid)
      print([r.served ? `${r.served.name}: stopped cleanly on ${r.served.status.node} (${r.served.nid})` : `${r.why}; nothing to stop`])
    })

  targetCommand(program, 'barrier', 'replay barrier: commit everything, then commit nothing more until the target stops').action(
    async (what: string, o: TargetOpts) => {
      const r = await askTarget<{ target: string; last_committed: number }>(what, o, 'barrier')
      print([`${r.target}: replay barrier set at last_committed ${r.last_committed}; nothing more is committed until it stops`])
    },
  )

  targetCommand(program, 'recovery-status', "a target's recovery state, like obdfilter.*.recovery_status")
    .option('--json', 'print JSON')
    .action(async (what: string, o: TargetOpts & { json?: boolean }) => {
      const r = await askTarget<RecoveryStatus>(what, o, 'recovery_status')
      if (o.json) print([JSON.stringify(r, null, 2)])
      else print(recoveryLines(r))
    })

  targetCommand(program, 'abort-recovery', 'end recovery now, evicting the clients that have not finished').action(
    async (what: string, o: TargetOpts) => {
      const r = await askTarget<{ target: string; aborted: boolean }>(what, o, 'abort_recovery')
      print([`${r.target}: ${r.aborted ? 'recovery aborted' : 'not in recovery, nothing to abort'}`])
    },
  )

  targetCommand(program, 'evict', 'evict a client from a target')
    .argument('<client_uuid>', 'client UUID, as listed by recovery-status or cluster status')
    .action(async (what: string, uuid: string, o: TargetOpts) => {
      const r = await askTarget<{ target: string }>(what, o, 'evict', { client: uuid })
      print([`${r.target}: evicted ${uuid}`])
    })
}

interface TargetOpts extends MgsAccessOpts {
  mgsnode?: string
  port?: number
}

/** The verbs that take a target directory, or a target name found through the MGS. */
function targetCommand(program: Command, name: string, description: string): Command {
  const cmd = command(program, name, description)
    .argument('<dir|target>', 'target directory, or a target name (mdt0, ost1, spfs-OST0001, MGS) with --mgsnode')
    .option('--mgsnode <nidspec>', 'MGS NIDs, to find the node serving a target given by name')
    .option('--port <port>', 'the filesystem-wide port, with --mgsnode (default 988)', portParser)
    .option('--key-file <path>', 'with --mgsnode, on a filesystem with a shared key: one of its keys (fs, admin or master)')
  return withTlsOptions(cmd, 'a certificate signed by the CA, to ask an MGS that requires TLS (with --mgsnode)')
}

/** An admin request to the target `what` names, wherever it is served. */
async function askTarget<T>(what: string, o: TargetOpts, cmd: string, args?: Record<string, unknown>): Promise<T> {
  const { targetRequest } = await import('../cluster/resolve.js')
  return targetRequest<T>(await targetRef(what, o), cmd, args)
}

/** With --mgsnode a target name is meant, even if a directory of that name happens to exist here. */
async function targetRef(what: string, o: TargetOpts): Promise<TargetRef> {
  const isName = !!parseTargetName(what)
  const { refByDir, refByName } = await import('../cluster/resolve.js')
  if (o.mgsnode && isName) return refByName(what, o.mgsnode, o.port, await mgsAccess(o))
  if (existsSync(what)) return refByDir(what)
  if (!isName) throw new UsageError(`'${what}' is neither a target directory nor a target name (e.g. ost1, spfs-OST0001, mdt0, MGS)`)
  throw new UsageError(`a target name (${what}) needs --mgsnode to find the node serving it; or give its directory`)
}

type RecoveryStatus = { target: string; clients?: Array<{ uuid: string; state: string }> } & Record<string, unknown>

/** Lustre's layout: `<prefix>.<target>.recovery_status=` then `key: value` lines; then the known clients. */
function recoveryLines(r: RecoveryStatus): string[] {
  const { target, clients, ...fields } = r
  const prefix = target === 'MGS' ? 'mgs' : /-MDT/.test(target) ? 'mdt' : 'obdfilter'
  const lines = [`${prefix}.${target}.recovery_status=`, ...Object.entries(fields).map(([k, v]) => `${k}: ${String(v)}`)]
  if (clients?.length) lines.push('clients:', ...clients.map((c) => `  ${c.uuid}: ${c.state}`))
  return lines
}

async function runForeground(
  dir: string,
  nid: string,
  name: string | undefined,
  log: string | undefined,
  params: Record<string, string>,
  discardCorruptJournal: boolean,
  metrics: string | undefined,
  tls: TlsFiles | undefined,
): Promise<void> {
  const abs = path.resolve(dir)
  const cfg = await readConfig(abs)
  const { probeNode } = await import('../cluster/admin.js')
  const p = await probeNode(nid, cfg.port)
  if (p.state !== 'down') throw new Error(`a node already runs on ${nid} (port ${cfg.port}); without -f, 'lproxy start' mounts the target on it`)
  const { runNode } = await import('../server/main.js')
  await new Promise<void>((resolve) =>
    runNode({ nid, name: name ?? parseNid(nid).host, port: cfg.port, log, dir: abs, params, discardCorruptJournal, metrics, tls }, (m) => {
      // On failure runNode exits the process itself, after this line is out.
      if (m.ok) print([`${(m.targets ?? []).join(', ')}: serving on ${nid} (pid ${process.pid}, foreground)`])
      else process.stderr.write(`lproxy: ${m.error}\n`)
      resolve()
    }),
  )
}

// ---- parsing helpers shared with the cluster commands ----

export interface TlsOpts {
  tlsCa?: string
  tlsCert?: string
  tlsKey?: string
}

/** --tls-ca, --tls-cert and --tls-key; `cert` says whose certificate it is. */
export function withTlsOptions(cmd: Command, cert: string): Command {
  return cmd
    .option('--tls-ca <file>', "mutual TLS: the filesystem's CA certificate (PEM)")
    .option('--tls-cert <file>', `mutual TLS: ${cert}`)
    .option('--tls-key <file>', 'mutual TLS: the key of that certificate (mode 0600)')
}

/** The files of --tls-ca, --tls-cert and --tls-key, loaded and checked (none: plaintext). */
export async function tlsMaterial(o: TlsOpts): Promise<TlsMaterial | undefined> {
  const f = tlsOption(o)
  return f && loadTls(f)
}

export interface MgsAccessOpts extends TlsOpts {
  keyFile?: string
}

/** How a command without a mount reaches the MGS: --key-file's key (the admin class from a master key), --tls-*'s material. */
export async function mgsAccess(o: MgsAccessOpts): Promise<MgsAccess> {
  return { key: o.keyFile ? await loadSigningKey(o.keyFile, 'admin') : undefined, tls: await tlsMaterial(o) }
}

/** --tls-ca, --tls-cert and --tls-key: all three or none; relative paths are the caller's (a node runs elsewhere). */
export function tlsOption(o: TlsOpts): TlsFiles | undefined {
  const f = tlsFiles({ ca: o.tlsCa, cert: o.tlsCert, key: o.tlsKey }, '--tls-ca, --tls-cert and --tls-key')
  return f && { ca: path.resolve(f.ca), cert: path.resolve(f.cert), key: path.resolve(f.key) }
}

/**
 * A subcommand whose parse errors are one `lproxy: ...` line, like every other failure;
 * `summary` is its line in the parent's help when the description is long.
 */
export function command(parent: Command, name: string, description: string, summary?: string): Command {
  const cmd = parent.command(name).description(description).showHelpAfterError(false)
  if (summary) cmd.summary(summary)
  const full = [parent.parent ? parent.name() : '', name].filter(Boolean).join(' ')
  return cmd.configureOutput({
    outputError: (str, write) => write(`lproxy: ${str.replace(/^error: /, '').trimEnd()} (see 'lproxy ${full} --help')\n`),
  })
}

/** Repeatable option; no default given to commander, so that help does not show `(default: [])`. */
export function collect(value: string, previous: string[] | undefined): string[] {
  return [...(previous ?? []), value]
}

export function print(lines: string[]): void {
  process.stdout.write(lines.map((l) => l + '\n').join(''))
}
