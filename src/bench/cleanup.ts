import { signalExitCode } from '../cluster/proc.js'

/**
 * Everything the harness starts (the cluster, peer mounts and their servers, temporary
 * directories) registers how to undo it; undone in reverse order at the end, on failure,
 * or on SIGINT/SIGTERM, so no mount or process is left behind.
 */
interface Step {
  what: string
  fn: () => Promise<void>
  /** Once started, by its owner or by run(): each step runs once, and whoever comes second waits for it. */
  done?: Promise<void>
}

export class Cleanup {
  private readonly steps: Step[] = []
  /** An interrupt's cleanup, at whose end the process exits. */
  private stopping: Promise<void> | null = null

  /** Registers a step; the function returned runs it now (or waits for it, if it runs already). */
  push(what: string, fn: () => Promise<void>): () => Promise<void> {
    const step: Step = { what, fn }
    this.steps.push(step)
    return () => (step.done ??= fn())
  }

  /**
   * Until the returned function is called, SIGINT and SIGTERM stop the process this way:
   * `first` (what must stop before the steps run), every step, then exit 128 + the signal.
   */
  trap(say: (line: string) => void, first: () => Promise<void> = async () => undefined): () => void {
    const onSignal = (sig: NodeJS.Signals) => {
      say(`${sig}: stopping the workload and cleaning up`)
      this.stopping = first()
        .catch((e: unknown) => say(`stopping the workload failed: ${(e as Error).message}`))
        .then(() => this.undo(say))
        .finally(() => process.exit(signalExitCode(sig)))
    }
    process.once('SIGINT', onSignal).once('SIGTERM', onSignal)
    return () => void process.off('SIGINT', onSignal).off('SIGTERM', onSignal)
  }

  /**
   * Runs what is left, last registered first; a failing step is reported and the others still
   * run. After an interrupt, the interrupt's cleanup is the one: this waits for it (and the exit).
   */
  async run(say: (line: string) => void): Promise<void> {
    await (this.stopping ?? this.undo(say))
  }

  private async undo(say: (line: string) => void): Promise<void> {
    for (const step of [...this.steps].reverse()) {
      // A step its owner started is its owner's to report.
      const owned = step.done !== undefined
      await (step.done ??= step.fn()).catch((e: unknown) => {
        if (!owned) say(`cleanup of ${step.what} failed: ${(e as Error).message}`)
      })
    }
  }
}
