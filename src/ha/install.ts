import { promises as fsp } from 'node:fs'
import path from 'node:path'
import { fileURLToPath } from 'node:url'

/**
 * `lproxy ha install-agents`: the OCF resource agent and the fence agent where Pacemaker
 * looks for them, each told the absolute path of this lproxy (the HA daemons run them with
 * a bare environment, so PATH cannot be relied on).
 */
const ROOT = fileURLToPath(new URL('../..', import.meta.url))
const LPROXY = path.join(ROOT, 'bin', 'lproxy.js')

export const AGENTS = [
  { from: 'ha/ocf/target', to: 'usr/lib/ocf/resource.d/lproxy/target' },
  { from: 'ha/fence/fence_lproxy', to: 'usr/sbin/fence_lproxy' },
] as const

/** The line every agent marks with `# lproxy-path`. */
function withPath(text: string, lproxy: string): string {
  const out = text.replace(/^LPROXY=.*# lproxy-path$/m, `LPROXY="\${LPROXY:-${lproxy}}" # lproxy-path`)
  if (out === text) throw new Error('agent source has no "# lproxy-path" line')
  return out
}

/** Install under `root` (normally /); returns the files written. */
export async function installAgents(root = '/'): Promise<string[]> {
  const written: string[] = []
  for (const a of AGENTS) {
    const dest = path.join(root, a.to)
    await fsp.mkdir(path.dirname(dest), { recursive: true, mode: 0o755 })
    const tmp = `${dest}.tmp-${process.pid}`
    await fsp.writeFile(tmp, withPath(await fsp.readFile(path.join(ROOT, a.from), 'utf8'), LPROXY), { mode: 0o755 })
    await fsp.rename(tmp, dest)
    written.push(dest)
  }
  return written
}
