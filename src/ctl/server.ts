import type net from 'node:net'
import { serveJsonSocket } from '../common/jsonsock.js'
import { clientSocket } from '../common/rundir.js'
import { LpError } from '../protocol/errno.js'
import { dirLayoutSchema } from '../protocol/ops.js'
import type { ClientFs } from '../client/fs.js'
import { PathFs } from '../llite/paths.js'
import { deviceList, setActive } from './devices.js'
import { dfTargets } from './df.js'
import { getParams, setParams } from './params.js'

/**
 * The mount daemon's control socket (root only): what `lproxy` admin commands ask of a
 * mounted client.
 */
export interface CtlContext {
  fs: ClientFs
  mountpoint: string
  umount: () => Promise<void>
}

export async function serveCtl(ctx: CtlContext): Promise<net.Server> {
  return serveJsonSocket(clientSocket(ctx.mountpoint), (req) => handle(ctx, req))
}

function strings(v: unknown, what: string): string[] {
  if (!Array.isArray(v) || !v.length || !v.every((x) => typeof x === 'string')) throw new LpError('EINVAL', `${what}: expected a non-empty list of strings`)
  return v
}

/** Paths on the control socket are relative to the mount's root. */
function fsPath(p: unknown): string {
  if (typeof p !== 'string' || !p.startsWith('/')) throw new LpError('EINVAL', 'path must be absolute within the mount')
  return p
}

async function handle(ctx: CtlContext, req: Record<string, unknown>): Promise<unknown> {
  const { fs } = ctx
  switch (req.cmd) {
    case 'status':
      return {
        mountpoint: ctx.mountpoint,
        pid: process.pid,
        fsname: fs.config.fsname,
        // Where its MGS is: lfsck --mount finds the MDT's node through it.
        mgsnode: fs.mgc.import.conns.map((c) => c.nid).join(':'),
        port: fs.config.port,
        client: fs.client.uuid,
        ir: fs.options.ir,
        imports: fs.imports().map((i) => ({
          name: i.name,
          target: i.target,
          state: i.state,
          nid: i.currentNid ?? null,
          inflight: i.inflight,
          delayed: i.delayedCount,
          kept_bytes: i.keptBytes,
          kept_requests: i.replayList.length,
          deactive: i.deactive,
          invalid: i.invalid,
          connection_attempts: i.connectionAttempts,
          replayed_requests: fs.replayed.get(i)?.requests ?? 0,
          replayed_bytes: fs.replayed.get(i)?.bytes ?? 0,
        })),
      }
    case 'umount':
      setImmediate(() => void ctx.umount())
      return {}
    case 'dl':
      return deviceList(fs)
    case 'get_param':
      return getParams(fs, strings(req.patterns, 'patterns'))
    case 'set_param':
      return setParams(fs, strings(req.settings, 'settings'))
    case 'activate':
    case 'deactivate':
      return setActive(fs, String(req.target), req.cmd === 'activate', req.permanent === true)
    case 'df':
      return { mountpoint: ctx.mountpoint, targets: await dfTargets(fs) }
    case 'setstripe': {
      const dl = req.layout === null ? null : dirLayoutSchema.parse(req.layout)
      await fs.llite.setstripe((await new PathFs(fs.llite).resolve(fsPath(req.path))).fid, dl)
      return {}
    }
    case 'getstripe':
      return fs.llite.getstripe((await new PathFs(fs.llite).resolve(fsPath(req.path))).fid)
    default:
      throw new LpError('EINVAL', `unknown control command '${String(req.cmd)}'`)
  }
}
