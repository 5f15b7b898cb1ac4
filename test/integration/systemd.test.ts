/**
 * systemd (issue 18): the unit passes `systemd-analyze verify`, fstab lines of type lproxy come
 * out of systemd's own fstab generator as the mount units an admin expects, a target started in
 * the foreground sends READY=1 (then STOPPING=1) to $NOTIFY_SOCKET from its own process, and a
 * node reopens its log on SIGHUP as logrotate expects. This machine boots without systemd: the
 * tools run on files. This file owns loopback 127.0.115.0/24 and port 31700.
 */
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process'
import { existsSync, promises as fsp } from 'node:fs'
import path from 'node:path'
import { createInterface } from 'node:readline'
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest'
import { REPO, tempDir, removeTempDirs } from '../helpers/nodes.js'
import { APT_LOCK, sh } from '../helpers/sh.js'

const LPROXY = path.join(REPO, 'bin', 'lproxy.js')
const UNIT = 'lproxy-target@.service'
const GENERATOR = '/lib/systemd/system-generators/systemd-fstab-generator'
let tmp: string
const started: ChildProcessWithoutNullStreams[] = []

beforeAll(async () => {
  tmp = await tempDir('lp-systemd')
  // The tools only, for this test: lproxy itself (and the bootstrap) needs no systemd.
  if (!existsSync('/usr/bin/systemd-analyze') || !existsSync(GENERATOR))
    await sh(`flock ${APT_LOCK} sh -c 'apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends systemd >/dev/null'`, { timeoutMs: 600_000 })
}, 600_000)
afterAll(async () => {
  for (const c of started) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL')
  await removeTempDirs()
})

/** Lines a child prints, as they come. */
function lines(c: ChildProcessWithoutNullStreams): AsyncIterator<string> {
  return createInterface({ input: c.stdout })[Symbol.asyncIterator]()
}

describe('systemd', () => {
  it('the target unit passes systemd-analyze verify (and a broken one does not)', async () => {
    const root = path.join(tmp, 'root')
    await sh(`node "${LPROXY}" install --root "${root}"`)
    // verify wants ExecStart's program to exist: the copy names the one installed under the test's root.
    const unit = (await fsp.readFile(path.join(root, 'etc/systemd/system', UNIT), 'utf8')).replaceAll('/usr/local/bin/lproxy', path.join(root, 'usr/local/bin/lproxy'))
    const good = path.join(tmp, 'lproxy-target@srv-ost1.service')
    await fsp.writeFile(good, unit)
    expect(await sh(`systemd-analyze verify "${good}" 2>&1`)).not.toMatch(/lproxy/)
    const bad = path.join(tmp, 'lproxy-target@srv-ost2.service')
    await fsp.writeFile(bad, unit.replace('Type=notify', 'Type=notifyy'))
    expect(await sh(`systemd-analyze verify "${bad}" 2>&1 || true`)).toMatch(/Failed to parse service type|Type=notifyy|notifyy/)
  })

  it("systemd's fstab generator makes lproxy lines remote mounts, honouring nofail, noauto and x-systemd.*", async () => {
    const fstab = path.join(tmp, 'fstab')
    await fsp.writeFile(
      fstab,
      [
        '10.0.0.1@tcp:10.0.0.2@tcp:/spfs /mnt/spfs lproxy noatime,_netdev,nofail,x-systemd.requires=lproxy-target@srv-mdt0.service,x-systemd.mount-timeout=30 0 0',
        '10.0.0.1@tcp:/spfs /mnt/idle lproxy noauto,_netdev 0 0',
        '',
      ].join('\n'),
    )
    const out = path.join(tmp, 'gen')
    for (const d of ['normal', 'early', 'late']) await fsp.mkdir(path.join(out, d), { recursive: true })
    await sh(`"${GENERATOR}" "${out}/normal" "${out}/early" "${out}/late"`, { env: { ...process.env, SYSTEMD_FSTAB: fstab } })
    const unit = await fsp.readFile(path.join(out, 'normal', 'mnt-spfs.mount'), 'utf8')
    for (const l of ['What=10.0.0.1@tcp:10.0.0.2@tcp:/spfs', 'Where=/mnt/spfs', 'Type=lproxy', 'TimeoutSec=30s', 'Requires=lproxy-target@srv-mdt0.service', 'After=lproxy-target@srv-mdt0.service'])
      expect(unit.split('\n')).toContain(l)
    // _netdev: pulled in by remote-fs.target (nofail: wanted, not required); noauto: by nothing.
    expect(existsSync(path.join(out, 'normal', 'remote-fs.target.wants', 'mnt-spfs.mount'))).toBe(true)
    expect(existsSync(path.join(out, 'normal', 'remote-fs.target.requires', 'mnt-spfs.mount'))).toBe(false)
    expect(await fsp.readFile(path.join(out, 'normal', 'mnt-idle.mount'), 'utf8')).toMatch(/^Type=lproxy$/m)
    expect(await sh(`find "${out}" -name 'mnt-idle.mount' -path '*.target.*'`)).toBe('')
  })

  it('a foreground target notifies READY=1 from its own process when it serves, reopens its log on SIGHUP, notifies STOPPING=1 on SIGTERM', async () => {
    const dir = path.join(tmp, 'mdt0')
    const log = path.join(tmp, 'node.log')
    const socket = path.join(tmp, 'notify')
    await sh(`node "${LPROXY}" format --fsname spfs --mgs --mdt --index 0 --port 31700 --param mmp_interval=0.2 --param sys.timeout=4 "${dir}"`)
    // systemd's end of the protocol: a datagram socket that learns each sender's PID (SCM_CREDENTIALS).
    const listener = spawn('python3', [
      '-c',
      [
        'import json, socket, struct, sys',
        's = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)',
        's.bind(sys.argv[1])',
        's.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)',
        'print("bound", flush=True)',
        'while True:',
        '    msg, anc, _, _ = s.recvmsg(4096, socket.CMSG_SPACE(12))',
        '    pid = [struct.unpack("iII", d[:12])[0] for (l, t, d) in anc if l == socket.SOL_SOCKET and t == socket.SCM_CREDENTIALS]',
        '    print(json.dumps({"pid": pid[0] if pid else None, "msg": msg.decode()}), flush=True)',
      ].join('\n'),
      socket,
    ])
    started.push(listener)
    const heard = lines(listener)
    expect((await heard.next()).value).toBe('bound')
    const node = spawn(process.execPath, [LPROXY, 'start', dir, '--nid', '127.0.115.1@tcp', '--log', log, '--foreground'], { env: { ...process.env, NOTIFY_SOCKET: socket, LPROXY_RUN_DIR: path.join(tmp, 'run') } })
    started.push(node)
    const ready = JSON.parse((await heard.next()).value as string) as { pid: number; msg: string }
    expect(ready.pid).toBe(node.pid)
    expect(ready.msg.split('\n')).toEqual(['READY=1', 'STATUS=MGS, spfs-MDT0000: serving on 127.0.115.1@tcp'])

    // logrotate: move the file away, SIGHUP; what follows goes to a new file of the old name.
    await vi.waitFor(async () => expect(await fsp.readFile(log, 'utf8')).toMatch(/serving on 127\.0\.115\.1@tcp/), { timeout: 10_000, interval: 50 })
    await fsp.rename(log, `${log}.1`)
    node.kill('SIGHUP')
    await vi.waitFor(() => expect(existsSync(log)).toBe(true), { timeout: 10_000, interval: 20 })
    const exited = new Promise<number | null>((resolve) => node.once('exit', (code) => resolve(code)))
    node.kill('SIGTERM')
    const stopping = JSON.parse((await heard.next()).value as string) as { pid: number; msg: string }
    expect(stopping).toEqual({ pid: node.pid, msg: 'STOPPING=1' })
    expect(await exited).toBe(0)
    expect(await fsp.readFile(log, 'utf8')).toMatch(/SIGTERM: stopping every target cleanly/)
    expect(await fsp.readFile(`${log}.1`, 'utf8')).not.toMatch(/SIGTERM/)
    listener.kill('SIGKILL')
  }, 60_000)
})
