import { execFile } from 'node:child_process'

/**
 * Run a bash script (real programs: cp, dd, tar, sha256sum, ...) and return its stdout.
 * Asynchronous on purpose: the test process must stay free while programs use the mount.
 */
export function sh(script: string, opts: { cwd?: string; timeoutMs?: number; env?: NodeJS.ProcessEnv } = {}): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile('bash', ['-euo', 'pipefail', '-c', script], { cwd: opts.cwd, timeout: opts.timeoutMs ?? 120_000, env: opts.env ?? process.env, maxBuffer: 64 * 1024 * 1024 }, (err, stdout, stderr) => {
      if (err) reject(new Error(`script failed (${err.code}): ${script}\n${stderr}`))
      else resolve(stdout)
    })
  })
}

/** Run a script expected to fail; resolves with its stderr. */
export function shFails(script: string, opts: { cwd?: string } = {}): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile('bash', ['-c', script], { cwd: opts.cwd, timeout: 60_000 }, (err, _stdout, stderr) => {
      if (!err) reject(new Error(`script unexpectedly succeeded: ${script}`))
      else resolve(stderr)
    })
  })
}
