import os from 'node:os'
import { Option, type Command } from 'commander'
import type { BenchMode } from '../bench/failover.js'
import { checkJobs, JOB_NAMES, type JobName } from '../bench/jobs.js'
import { PAGE } from '../bench/pattern.js'
import { DEFAULT_OUT } from '../bench/report.js'
import { DEFAULT_PORT } from '../cluster/layout.js'
import { UsageError } from './errors.js'
import { command, print } from './server.js'
import { parseSize } from './size.js'
import { intParser, paramParser, portParser, secondsParser, stripeCountParser } from './parse.js'

/** `lproxy bench` (logic in src/bench/). */
const BENCH_NET = '127.0.9'
const BENCH_NETNS_NET = '10.77.9'

export function registerBenchCommand(program: Command): void {
  command(program, 'bench', 'throughput of sequential, random and metadata workloads on the embedded cluster (or --mount), optionally across a failover or against sshfs, rclone and bindfs; every byte verified; JSON + SVG in bench/out',
    'throughput on the embedded cluster or a mount, optionally across a failover or against sshfs, rclone, bindfs')
    .option('--mount <mountpoint>', 'bench an existing mount instead of bringing up the embedded cluster')
    .option('--dir <dir>', 'cluster directory, formatted afresh and kept (default: a new one under /dev/shm, removed after)')
    .option('--net <a.b.c>', `/24 of the embedded cluster (default ${BENCH_NET}, ${BENCH_NETNS_NET} with --netns)`)
    .option('--netns', 'the embedded cluster in network namespaces (as cluster up --netns); implied by --mode partition')
    .option('--port <port>', 'port of the embedded cluster', portParser, DEFAULT_PORT)
    .addOption(new Option('--timeout <s>', "obd_timeout (sys.timeout) of the embedded cluster's servers and client; the recovery window scales with it (default: the cluster's, 100)").argParser(paramParser('timeout')).conflicts('mount'))
    .addOption(new Option('--tls', 'the embedded cluster with mutual TLS everywhere (cluster up --tls), to measure its cost').conflicts('mount'))
    .addOption(new Option('--no-key', 'the embedded cluster without a shared key (cluster up --no-key), to measure what signing every RPC costs').conflicts('mount'))
    .option('--size <size>', 'bytes per sequential job, shared by its streams (k, M, G)', '1G')
    .option('--jobs <list>', `comma-separated, in order: ${JOB_NAMES.join(',')}`, JOB_NAMES.join(','))
    .option('--rand-size <size>', 'file size of the 4 KiB random writer', '256M')
    .option('--rand-seconds <s>', 'how long the random writer writes', secondsParser(), 10)
    .option('--meta-files <n>', 'files of the metadata mix (create, stat, unlink)', intParser(1, 1_000_000), 1000)
    .option('--repeat <n>', 'run the jobs this many times; figures are medians', intParser(1, 100), 1)
    .option('--stripe-count <n>', 'stripe count of the bench directory on lproxy (-1: every OST)', stripeCountParser, -1)
    .option('--fio', 'run the jobs with fio (installed from Debian if missing)')
    .addOption(new Option('--failover-at <s>', 'fail a node this many seconds into the run (embedded cluster only)').argParser(secondsParser(true)).conflicts(['mount', 'compare']))
    .option('--fail <node|target>', 'what --failover-at fails', 'oss1')
    .addOption(new Option('--mode <mode>', 'hard (SIGKILL + takeover), soft (clean stop + takeover), hang (SIGSTOP, fenced after the dead time) or partition (link cut, fenced after the dead time; --netns)').choices(['hard', 'soft', 'hang', 'partition']).default('hard'))
    .option('--deadtime <s>', 'time before the partner takes over', secondsParser(true), 1)
    .option('--compare', 'also run the jobs through sshfs (default, tuned), rclone mount of webdav, and tuned bindfs')
    .option('--name <name>', 'name of bench/out/<name>.json and .svg (default: kind and date)')
    .option('--out <dir>', 'where the JSON and SVG go', DEFAULT_OUT)
    .option('--json', 'print the report as JSON instead of the summary')
    .action(async (o: BenchCli) => {
      const jobs = o.jobs.split(',').map((j) => j.trim()) as JobName[]
      for (const j of jobs) if (!JOB_NAMES.includes(j)) throw new UsageError(`unknown job '${j}' (known: ${JOB_NAMES.join(', ')})`)
      try {
        checkJobs(jobs)
      } catch (e) {
        throw new UsageError((e as Error).message)
      }
      const size = parseSize(o.size, '--size')
      if (size < 4 * PAGE || size % (4 * PAGE)) throw new UsageError(`--size ${o.size}: a multiple of 16k (four streams of whole 4 KiB pages)`)
      const randSize = parseSize(o.randSize, '--rand-size')
      if (randSize < PAGE || randSize % PAGE) throw new UsageError(`--rand-size ${o.randSize}: a multiple of 4k`)
      const netns = !!o.netns || o.mode === 'partition'
      const [{ runBench }, { Live }, { compareTable, runSummary }] = await Promise.all([import('../bench/bench.js'), import('../bench/live.js'), import('../bench/table.js')])
      const { report, files, skipped } = await runBench({
        mount: o.mount,
        dir: o.dir,
        net: o.net ?? (netns ? BENCH_NETNS_NET : BENCH_NET),
        netns,
        port: o.port,
        params: o.timeout === undefined ? {} : { 'sys.timeout': String(o.timeout) },
        tls: !!o.tls,
        key: o.key !== false,
        stripeCount: o.stripeCount,
        workload: {
          jobs,
          size,
          blockSize: 1 << 20,
          randSize,
          randSeconds: o.randSeconds,
          metaFiles: o.metaFiles,
          repeat: o.repeat,
        },
        fio: !!o.fio,
        compare: !!o.compare,
        failover: o.failoverAt === undefined ? null : { atS: o.failoverAt, what: o.fail, mode: o.mode, deadtimeMs: o.deadtime * 1000 },
        name: o.name,
        out: o.out,
        command: ['lproxy', ...process.argv.slice(2)].join(' '),
        live: new Live(o.json ? process.stderr : process.stdout),
      })
      if (o.json) print([JSON.stringify(report, null, 2)])
      else {
        print(['', ...report.runs.flatMap(runSummary)])
        if (report.runs.length > 1) print(['', ...compareTable(report.runs, report.settings.workload.repeat)])
        for (const s of skipped) print([`skipped ${s.fs}: ${s.error}`])
        print(['', `wrote ${files.json}`, `  and ${files.svg}`])
      }
      // The peers' failures (rclone cannot write at random offsets without its cache) are
      // their figures; lproxy's own errors or bad data fail the command.
      const own = report.runs[0]
      if (own && (!own.verified || own.app_errors)) process.exitCode = 1
    })
}

/** `lproxy selftest`, like lnet_selftest: the round-trip floor beneath lproxy's RPCs (src/bench/selftest.ts). */
export function registerSelftestCommand(program: Command): void {
  command(program, 'selftest', "round-trip floor of this machine's loopback beneath lproxy's RPCs, like lnet_selftest: a TCP echo, and an RPC through lproxy's own path to a node's front answered at once, on a @tcp NID (binary messages) and on an @http one (undici), between two processes, on one CPU and on two; then the metadata mix on a mount of lproxy's FUSE binding whose RPCs are answered at once (on @tcp, and on @http), the fastest any lproxy mount can create, stat and unlink here; JSON in bench/out",
    "this machine's RPC round-trip and metadata floor beneath lproxy, like lnet_selftest")
    .option('--host <addr>', 'loopback address the server process listens on', '127.0.7.1')
    .option('--port <port>', 'its port', portParser, 9870)
    .option('--count <n>', 'timed round trips per repetition (as many untimed go first)', intParser(1, 10_000_000), 5000)
    .option('--repeat <n>', 'repetitions; figures are medians', intParser(1, 100), 3)
    .option('--meta-files <n>', "files of the metadata mix on the floor mount (lproxy's FUSE binding, its RPCs answered at once); 0 skips it", intParser(0, 1_000_000), 2000)
    .option('--tls', 'also the RPC floors inside mutual TLS (tcp-tls, http-tls), with certificates made for the run')
    .option('--name <name>', 'name of bench/out/<name>.json (default: selftest and date)')
    .option('--out <dir>', 'where the JSON goes', DEFAULT_OUT)
    .option('--key-file <path>', 'a master key file (lproxy format --key-file): every RPC signed and its reply checked, to measure what the shared key costs')
    .action(async (o: { host: string; port: number; count: number; repeat: number; metaFiles: number; tls?: boolean; name?: string; out: string; keyFile?: string }) => {
      if (!/^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(o.host)) throw new UsageError(`--host ${o.host}: a loopback address (127.x.y.z)`)
      const [{ runSelftest }, { onPath }] = await Promise.all([import('../bench/selftest.js'), import('../bench/install.js')])
      const { file } = await runSelftest(
        {
          host: o.host,
          port: o.port,
          count: o.count,
          repeat: o.repeat,
          metaFiles: o.metaFiles,
          tls: !!o.tls,
          name: o.name,
          out: o.out,
          command: ['lproxy', ...process.argv.slice(2)].join(' '),
          cpus: os.cpus().length,
          taskset: onPath('taskset'),
          keyFile: o.keyFile,
        },
        (line) => print([line]),
      )
      print(['', `wrote ${file}`])
    })
}

interface BenchCli {
  mount?: string
  dir?: string
  net?: string
  netns?: boolean
  port: number
  timeout?: number
  tls?: boolean
  /** false with --no-key. */
  key?: boolean
  size: string
  jobs: string
  randSize: string
  randSeconds: number
  metaFiles: number
  repeat: number
  stripeCount: number
  fio?: boolean
  failoverAt?: number
  fail: string
  mode: BenchMode
  deadtime: number
  compare?: boolean
  name?: string
  out: string
  json?: boolean
}
