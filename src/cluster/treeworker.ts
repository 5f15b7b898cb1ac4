import { parentPort, workerData } from 'node:worker_threads'
import type { TreeJob, TreeMessage } from './treejob.js'
import { copyTree, verifyTree } from './workload.js'

/** The thread treejob.ts starts: one copy or verification of a tree, then its result. */
const job = workerData as TreeJob
const post = (m: TreeMessage) => parentPort!.postMessage(m)
post({ type: 'done', result: job.kind === 'copy' ? copyTree(job.src, job.dst, (bytes) => post({ type: 'progress', bytes })) : verifyTree(job.src, job.dst) })
