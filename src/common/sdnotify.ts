import { execFile } from 'node:child_process'
import { createRequire } from 'node:module'
import { fileURLToPath } from 'node:url'
import type { Logger } from './log.js'

/**
 * sd_notify(3) for a `Type=notify` unit: `READY=1` once the service serves, `STOPPING=1` when it
 * ends. The datagram is sent from this process by the native addon (native/src/notify.c); when
 * it is not built, `systemd-notify` sends it, which the unit's `NotifyAccess=all` lets through.
 * Without $NOTIFY_SOCKET (not started by systemd) nothing is sent.
 */
const ADDON = fileURLToPath(new URL('../../native/build/Release/lproxy_notify.node', import.meta.url))

interface NotifyAddon {
  notify(socket: string, state: string): number
}

let addon: NotifyAddon | null | undefined

function load(): NotifyAddon | null {
  if (addon === undefined) {
    try {
      addon = createRequire(import.meta.url)(ADDON) as NotifyAddon
    } catch {
      addon = null
    }
  }
  return addon
}

export async function sdNotify(fields: Record<string, string>, log: Logger): Promise<void> {
  const socket = process.env.NOTIFY_SOCKET
  if (!socket) return
  const lines = Object.entries(fields).map(([k, v]) => `${k}=${v.replace(/\n/g, ' ')}`)
  const a = load()
  if (a) {
    const errno = a.notify(socket, lines.join('\n'))
    if (errno) log.warn({ errno, socket }, `sd_notify to ${socket} failed (errno ${errno})`)
    return
  }
  await new Promise<void>((resolve) =>
    execFile('systemd-notify', lines, (err) => {
      if (err) log.warn({ err: err.message }, 'sd_notify through systemd-notify failed')
      resolve()
    }),
  )
}
