import path from 'node:path'
import { META_FILE_BYTES, type PlannedJob, type StreamSpec } from '../jobs.js'

/**
 * fio command lines that do what a planned job's streams do: the same files, sizes, block
 * sizes and stream counts, fsync at the end of writes; a metadata mix is three runs of fio's
 * filecreate, filestat and filedelete engines (empty files: those engines do no I/O).
 * Written data carry fio's crc32c verify headers, checked at the end by `--verify_only`.
 */
export interface FioCall {
  /** The job, or the phase of the metadata mix. */
  phase: string
  /** Directory fio needs to exist. */
  dir: string
  args: string[]
}

const COMMON = ['--ioengine=psync', '--group_reporting', '--output-format=json']

export function fioCalls(job: PlannedJob): FioCall[] {
  const [s] = job.streams
  if (!s) return []
  const n = job.streams.length
  switch (s.kind) {
    case 'write':
      return [seq(job.name, s.path, n, s.size, s.bs, ['--rw=write', '--end_fsync=1', '--verify=crc32c', '--do_verify=0'])]
    case 'read':
      return [seq(job.name, s.path, n, s.size, s.bs, ['--rw=read'])]
    case 'randwrite': {
      const dir = path.dirname(s.path)
      const args = [`--name=${job.name}`, `--directory=${dir}`, `--filename=${path.basename(s.path)}`, '--rw=randwrite', '--bs=4k']
      return [{ phase: job.name, dir, args: [...args, `--size=${s.size}`, '--time_based', `--runtime=${s.seconds}`, '--end_fsync=1', ...COMMON] }]
    }
    case 'meta':
      return ['create', 'stat', 'unlink'].map((phase) => ({
        phase,
        dir: s.dir,
        args: [`--name=${phase}`, `--directory=${s.dir}`, `--ioengine=file${phase === 'unlink' ? 'delete' : phase}`, `--nrfiles=${s.count}`,
          `--filesize=${META_FILE_BYTES}`, '--openfiles=1', '--filename_format=f$filenum', '--group_reporting', '--output-format=json'],
      }))
    case 'verify':
      return verifyCalls(job.streams)
  }
}

/** seqN-i files, N streams: fio's $jobnum counts from 0 like the harness's i. */
function seq(name: string, file: string, n: number, size: number, bs: number, rw: string[]): FioCall {
  const dir = path.dirname(file)
  const prefix = path.basename(file).replace(/-\d+$/, '')
  const args = [`--name=write${n}`, `--directory=${dir}`, `--filename_format=${prefix}-$jobnum`, `--numjobs=${n}`, `--size=${size}`, `--bs=${bs}`, ...rw, ...COMMON]
  return { phase: name, dir, args }
}

/** The writes again with --verify_only (fio checks its headers); the random writer's file is not checked under fio. */
function verifyCalls(streams: StreamSpec[]): FioCall[] {
  const groups = new Map<string, Extract<StreamSpec, { kind: 'verify' }>[]>()
  for (const s of streams) {
    if (s.kind !== 'verify' || s.randomWrites !== undefined) continue
    const key = path.join(path.dirname(s.path), path.basename(s.path).replace(/-\d+$/, ''))
    groups.set(key, [...(groups.get(key) ?? []), s])
  }
  return [...groups.values()].map((g) => {
    const c = seq('verify', g[0]!.path, g.length, g[0]!.size, g[0]!.bs, ['--rw=write', '--verify=crc32c', '--verify_only'])
    return { ...c, phase: `verify ${path.basename(g[0]!.path).replace(/-\d+$/, '')}` }
  })
}
