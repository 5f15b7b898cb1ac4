import type { StreamSpec } from './jobs.js'
import { metaStream } from './streams/meta.js'
import { randwriteStream } from './streams/randwrite.js'
import { readStream } from './streams/read.js'
import { Stream } from './streams/stream.js'
import { verifyStream } from './streams/verify.js'
import { writeStream } from './streams/write.js'

/**
 * A workload process: runs one stream with real syscalls on the mount, in a process of its
 * own (never the mount daemon's, and not the harness's, whose event loop keeps reporting).
 * Protocol on the IPC channel: -> ready, <- {t0} (start now, buckets relative to t0),
 * -> progress every 100 ms, -> done with the StreamResult.
 */
const spec = JSON.parse(process.argv[2]!) as StreamSpec

function prepare(s: StreamSpec): (st: Stream) => Promise<object> {
  switch (s.kind) {
    case 'write':
      return writeStream(s)
    case 'read':
      return readStream(s)
    case 'randwrite':
      return randwriteStream(s)
    case 'meta':
      return metaStream(s)
    case 'verify':
      return verifyStream(s)
  }
}

// Data patterns are generated before 'ready', so their cost is not timed.
const run = prepare(spec)
const send = (m: unknown) => new Promise<void>((resolve) => process.send!(m, () => resolve()))

process.once('message', (m: { t0: number }) => {
  const st = new Stream(m.t0)
  const tick = setInterval(() => void send({ type: 'progress', ...st.progress() }), 100)
  void run(st)
    .catch((e: unknown) => (st.error('stream', e), {}))
    .then(async (extra) => {
      clearInterval(tick)
      await send({ type: 'done', result: st.result(extra) })
      process.disconnect()
    })
})
void send({ type: 'ready' })
