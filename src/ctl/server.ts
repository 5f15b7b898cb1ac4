import type net from 'node:net'
import { z } from 'zod'
import { serveJsonSocket } from '../common/jsonsock.js'
import { paramListSchema } from '../common/params.js'
import { clientSocket } from '../common/rundir.js'
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

const strings = paramListSchema
/** Paths on the control socket are relative to the mount's root. */
const fsPath = z.string().max(4096).startsWith('/', { message: 'path must be absolute within the mount' })
const ostName = z.string().min(1).max(64)

/** What the control socket answers, each request checked before it is acted on. */
export const ctlRequestSchema = z.discriminatedUnion('cmd', [
  z.object({ cmd: z.literal('status') }),
  z.object({ cmd: z.literal('umount') }),
  z.object({ cmd: z.literal('dl') }),
  z.object({ cmd: z.literal('get_param'), patterns: strings }),
  z.object({ cmd: z.literal('set_param'), settings: strings }),
  z.object({ cmd: z.literal('activate'), target: ostName, permanent: z.boolean().optional() }),
  z.object({ cmd: z.literal('deactivate'), target: ostName, permanent: z.boolean().optional() }),
  z.object({ cmd: z.literal('df') }),
  z.object({ cmd: z.literal('setstripe'), path: fsPath, layout: dirLayoutSchema.nullable() }),
  z.object({ cmd: z.literal('getstripe'), path: fsPath }),
])
export type CtlRequest = z.infer<typeof ctlRequestSchema>

export async function serveCtl(ctx: CtlContext): Promise<net.Server> {
  return serveJsonSocket(clientSocket(ctx.mountpoint), ctlRequestSchema, (req) => handle(ctx, req))
}

async function handle(ctx: CtlContext, req: CtlRequest): Promise<unknown> {
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
          replayed_requests: i.stats.replayedRequests,
          replayed_bytes: i.stats.replayedBytes,
        })),
      }
    case 'umount':
      setImmediate(() => void ctx.umount())
      return {}
    case 'dl':
      return deviceList(fs)
    case 'get_param':
      return getParams(fs, req.patterns)
    case 'set_param':
      return setParams(fs, req.settings)
    case 'activate':
    case 'deactivate':
      return setActive(fs, req.target, req.cmd === 'activate', req.permanent === true)
    case 'df':
      return { mountpoint: ctx.mountpoint, targets: await dfTargets(fs) }
    case 'setstripe':
      await fs.llite.setstripe((await new PathFs(fs.llite).resolve(req.path)).fid, req.layout)
      return {}
    case 'getstripe':
      return fs.llite.getstripe((await new PathFs(fs.llite).resolve(req.path)).fid)
  }
}
