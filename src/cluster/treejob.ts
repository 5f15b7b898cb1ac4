import { Worker } from 'node:worker_threads'
import type { CopyStats, VerifyStats } from './workload.js'

/**
 * The demo's application in a thread of its own: it copies and verifies with blocking
 * syscalls, as `cp -r` and `sha256sum` do, while this thread's event loop fails a node and
 * reports. On the event loop, each of those calls paid a hop through libuv's thread pool
 * (two wake-ups) on top of the mount's own work.
 */
export type TreeJob = { kind: 'copy' | 'verify'; src: string; dst: string }

export type TreeMessage = { type: 'progress'; bytes: number } | { type: 'done'; result: CopyStats | VerifyStats }

const ENTRY = new URL('./treeworker.js', import.meta.url)

export function copyTreeInThread(src: string, dst: string, onProgress: (bytes: number) => void, signal?: AbortSignal): Promise<CopyStats> {
  return run({ kind: 'copy', src, dst }, onProgress, signal) as Promise<CopyStats>
}

export function verifyTreeInThread(src: string, dst: string, signal?: AbortSignal): Promise<VerifyStats> {
  return run({ kind: 'verify', src, dst }, () => undefined, signal) as Promise<VerifyStats>
}

/**
 * An abort rejects at once and stops the thread at its next step: a syscall it is blocked in
 * (a close waiting for a failover) ends only when the mount answers or goes away.
 */
function run(job: TreeJob, onProgress: (bytes: number) => void, signal?: AbortSignal): Promise<CopyStats | VerifyStats> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(signal.reason)
    const w = new Worker(ENTRY, { workerData: job })
    const onAbort = () => {
      reject(signal!.reason)
      void w.terminate()
    }
    signal?.addEventListener('abort', onAbort, { once: true })
    let result: CopyStats | VerifyStats | null = null
    w.on('message', (m: TreeMessage) => {
      if (m.type === 'progress') onProgress(m.bytes)
      else result = m.result
    })
    w.once('error', reject)
    // Its messages are all delivered before 'exit'.
    w.once('exit', (code) => {
      signal?.removeEventListener('abort', onAbort)
      if (result) resolve(result)
      else reject(new Error(`the ${job.kind} thread exited (code ${code}) without a result`))
    })
  })
}
