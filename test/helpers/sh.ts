import { execFile } from 'node:child_process'

/** How a script runs: where, for how long, and as whom (`as`: a command that runs the rest as another user, e.g. setpriv). */
export interface ShOptions {
  cwd?: string
  timeoutMs?: number
  env?: NodeJS.ProcessEnv
  as?: string[]
}

/** `bash -c script`, run through `as` when given. */
function bash(script: string, strict: boolean, as: string[] = []): [string, string[]] {
  const argv = [...as, 'bash', ...(strict ? ['-euo', 'pipefail'] : []), '-c', script]
  return [argv[0]!, argv.slice(1)]
}

/**
 * Run a bash script (real programs: cp, dd, tar, sha256sum, ...) and return its stdout.
 * Asynchronous on purpose: the test process must stay free while programs use the mount.
 */
export function sh(script: string, opts: ShOptions = {}): Promise<string> {
  const [file, args] = bash(script, true, opts.as)
  return new Promise((resolve, reject) => {
    execFile(file, args, { cwd: opts.cwd, timeout: opts.timeoutMs ?? 120_000, env: opts.env ?? process.env, maxBuffer: 64 * 1024 * 1024 }, (err, stdout, stderr) => {
      if (err) reject(new Error(`script failed (${err.code}): ${script}\n${stderr}`))
      else resolve(stdout)
    })
  })
}

/** Run a script expected to fail; resolves with its stderr. */
export function shFails(script: string, opts: Pick<ShOptions, 'cwd' | 'as'> = {}): Promise<string> {
  const [file, args] = bash(script, false, opts.as)
  return new Promise((resolve, reject) => {
    execFile(file, args, { cwd: opts.cwd, timeout: 60_000 }, (err, _stdout, stderr) => {
      if (!err) reject(new Error(`script unexpectedly succeeded: ${script}`))
      else resolve(stderr)
    })
  })
}

/** Held around every apt-get of the tests: files run in parallel, and apt's lists lock does not wait as dpkg's does. */
export const APT_LOCK = '/run/lproxy-apt.lock'
