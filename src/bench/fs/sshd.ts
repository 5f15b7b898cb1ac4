import { execFile } from 'node:child_process'
import { existsSync, promises as fsp } from 'node:fs'
import path from 'node:path'
import { promisify } from 'node:util'
import { freePort, startService, type Service } from './service.js'

/**
 * A temporary sshd for sshfs to localhost: its own host key, config and authorized key for
 * root, all in `dir`, on a free loopback port; the machine's ssh setup is left alone.
 */
export interface Sshd extends Service {
  identity: string
}

const PRIVSEP = '/run/sshd'

export async function startSshd(dir: string): Promise<Sshd> {
  await fsp.mkdir(dir, { recursive: true, mode: 0o700 })
  const keygen = (file: string) => promisify(execFile)('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', 'lproxy-bench', '-f', file])
  const hostKey = path.join(dir, 'host_key')
  const identity = path.join(dir, 'id')
  await Promise.all([keygen(hostKey), keygen(identity)])
  await fsp.copyFile(`${identity}.pub`, path.join(dir, 'authorized_keys'))
  const port = await freePort()
  const config = path.join(dir, 'sshd_config')
  await fsp.writeFile(config, [
    `Port ${port}`,
    'ListenAddress 127.0.0.1',
    `HostKey ${hostKey}`,
    `PidFile ${path.join(dir, 'sshd.pid')}`,
    `AuthorizedKeysFile ${path.join(dir, 'authorized_keys')}`,
    'PermitRootLogin prohibit-password',
    'PasswordAuthentication no',
    'KbdInteractiveAuthentication no',
    'UsePAM no',
    // The key lives in a temporary directory whose modes sshd's strict checks would refuse.
    'StrictModes no',
    'Subsystem sftp /usr/lib/openssh/sftp-server',
    '',
  ].join('\n'))
  // sshd insists on its privilege-separation directory; made here if the package did not.
  const madePrivsep = !existsSync(PRIVSEP)
  if (madePrivsep) await fsp.mkdir(PRIVSEP, { mode: 0o755 })
  const svc = await startService('sshd', ['/usr/sbin/sshd', '-D', '-e', '-f', config], port).catch(async (e: unknown) => {
    if (madePrivsep) await fsp.rmdir(PRIVSEP).catch(() => undefined)
    throw e
  })
  return {
    port,
    identity,
    stop: async () => {
      await svc.stop()
      if (madePrivsep) await fsp.rmdir(PRIVSEP).catch(() => undefined)
    },
  }
}
