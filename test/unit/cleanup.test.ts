import { expect, test } from 'vitest'
import { Cleanup } from '../../src/bench/cleanup.js'

/** The bench's undo list: last registered first, each step once, failures reported and passed over. */
function deferred(): { promise: Promise<void>; resolve: () => void } {
  let resolve!: () => void
  const promise = new Promise<void>((r) => (resolve = r))
  return { promise, resolve }
}

test('undoes in reverse order, each step once, reporting a failure and going on', async () => {
  const c = new Cleanup()
  const order: string[] = []
  const said: string[] = []
  c.push('a', async () => void order.push('a'))
  const b = c.push('b', async () => void order.push('b'))
  c.push('c', async () => {
    order.push('c')
    throw new Error('boom')
  })
  await b()
  await c.run((l) => said.push(l))
  expect(order).toEqual(['b', 'c', 'a'])
  expect(said).toEqual(['cleanup of c failed: boom'])
  await c.run((l) => said.push(l))
  expect(order).toEqual(['b', 'c', 'a'])
})

test('a step its owner is running is waited for, not run again', async () => {
  const c = new Cleanup()
  const gate = deferred()
  let runs = 0
  const close = c.push('mount', () => {
    runs += 1
    return gate.promise
  })
  const owner = close()
  let ended = false
  const all = c.run(() => undefined).then(() => (ended = true))
  await new Promise((r) => setImmediate(r))
  expect(ended).toBe(false)
  gate.resolve()
  await Promise.all([owner, all])
  expect(ended).toBe(true)
  expect(runs).toBe(1)
  // The owner's second call waits on the same run.
  await close()
  expect(runs).toBe(1)
})
