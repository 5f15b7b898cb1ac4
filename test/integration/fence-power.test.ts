import { spawn, spawnSync } from 'node:child_process'
import { afterAll, beforeAll, expect, test } from 'vitest'
import { killMachine } from '../../src/ha/power.js'
import { freshNet } from '../helpers/netns.js'
import { pollUntil } from '../helpers/poll.js'

/**
 * Powering off a namespace "machine" (fence_lproxy off): a machine whose processes keep
 * forking (an HA stack's monitors) is off only when none is left, not when the ones listed
 * first are killed.
 */
const net = freshNet()
const ns = `lpnet-${net.split('.')[2]}-fork`

const ip = (...args: string[]) => spawnSync('ip', args, { encoding: 'utf8' })
const pids = () => ip('netns', 'pids', ns).stdout.split('\n').filter(Boolean)

beforeAll(() => {
  for (const args of [
    ['netns', 'add', ns],
    ['-n', ns, 'addr', 'add', `${net}.1/32`, 'dev', 'lo'],
  ]) {
    const r = ip(...args)
    if (r.status !== 0) throw new Error(`ip ${args.join(' ')}: ${r.stderr}`)
  }
})

afterAll(() => {
  for (const p of pids()) spawnSync('kill', ['-9', p])
})

test('off kills a machine whose processes fork while it is being killed', async () => {
  // A few hundred forks a second: some are born between any listing and its kill.
  const forker = spawn('ip', ['netns', 'exec', ns, 'sh', '-c', 'while :; do sleep 60 & sleep 0.002; done'], { stdio: 'ignore' })
  await pollUntil('the forker ran', () => pids().length > 20, 10_000)
  const killed = await killMachine(`${net}.1@tcp`)
  expect(killed).toContain(forker.pid)
  expect(pids()).toEqual([])
})
