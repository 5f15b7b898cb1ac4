import { callJsonSocket } from '../../src/common/jsonsock.js'
import { clientSocket } from '../../src/common/rundir.js'

/** What a mount daemon's control socket says of its imports. */
export interface ImportView {
  name: string
  target: string
  state: string
  nid: string | null
  inflight: number
  delayed: number
  connection_attempts: number
  replayed_requests: number
}

export async function imports(runDir: string, mountpoint: string): Promise<ImportView[]> {
  const prev = process.env.LPROXY_RUN_DIR
  process.env.LPROXY_RUN_DIR = runDir
  try {
    return (await callJsonSocket<{ imports: ImportView[] }>(clientSocket(mountpoint), { cmd: 'status' }, 5000)).imports
  } finally {
    process.env.LPROXY_RUN_DIR = prev
  }
}

export async function importOf(runDir: string, mountpoint: string, target: string): Promise<ImportView> {
  const i = (await imports(runDir, mountpoint)).find((x) => x.target === target)
  if (!i) throw new Error(`no import of ${target}`)
  return i
}
