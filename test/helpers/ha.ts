import { spawnSync } from 'node:child_process'
import { APT_LOCK } from './sh.js'

/**
 * The HA tests need Debian's Pacemaker stack. Installed here when missing (not by the
 * bootstrap: only these tests use it); if apt cannot install it the test fails, loudly.
 */
const NEEDED: Array<[string, string]> = [
  ['ocf-tester', 'resource-agents'],
  ['corosync', 'corosync'],
  ['pacemakerd', 'pacemaker'],
  ['crm_mon', 'pacemaker-cli-utils'],
  ['fence_ipmilan', 'fence-agents'],
  ['xmllint', 'libxml2-utils'],
]

const has = (cmd: string) => spawnSync('sh', ['-c', `command -v ${cmd} || [ -x /usr/sbin/${cmd} ]`]).status === 0

export function ensureHaPackages(): void {
  const missing = [...new Set(NEEDED.filter(([cmd]) => !has(cmd)).map(([, pkg]) => pkg))]
  if (!missing.length) return
  const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' }
  const run = (args: string[]) => spawnSync('flock', [APT_LOCK, 'apt-get', '-o', 'DPkg::Lock::Timeout=300', ...args], { env, encoding: 'utf8', timeout: 600_000 })
  run(['update', '-qq'])
  const r = run(['install', '-y', '-qq', '--no-install-recommends', ...missing])
  if (r.status !== 0) throw new Error(`cannot install ${missing.join(' ')} (apt-get exit ${r.status}): ${(r.stderr || '').trim().slice(-2000)}`)
  const still = NEEDED.filter(([cmd]) => !has(cmd)).map(([cmd]) => cmd)
  if (still.length) throw new Error(`installed ${missing.join(' ')} but still missing: ${still.join(' ')}`)
}
