import { defineConfig } from 'vitest/config'
import { BaseSequencer, type TestSpecification } from 'vitest/node'

/**
 * Suites that bring up clusters and mounts (e2e, then integration) go before the unit tests:
 * on a fresh clone vitest knows no durations and starts larger files first, which left a
 * 100 s Pacemaker suite for the middle of the run and two long ones for its end; the many
 * short unit files then fill the gaps between the forks' last long suites.
 */
const TIERS = ['/test/e2e/', '/test/integration/']

class SuitesFirst extends BaseSequencer {
  override async sort(files: TestSpecification[]): Promise<TestSpecification[]> {
    const tier = (f: TestSpecification) => {
      const i = TIERS.findIndex((d) => f.moduleId.includes(d))
      return i < 0 ? TIERS.length : i
    }
    // Stable: within a tier, vitest's own order (known durations, longest first; else size).
    return (await super.sort(files)).sort((a, b) => tier(a) - tier(b))
  }
}

// Suites run in separate processes (they start servers, mounts and kill nodes); files run in
// parallel, each on its own loopback addresses and port. Two at a time on two cores: the
// suite is CPU-bound here (three forks took 700 s where two took 778, with 4% of the CPU idle).
export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    pool: 'forks',
    poolOptions: { forks: { maxForks: 2, minForks: 1 } },
    sequence: { sequencer: SuitesFirst },
    testTimeout: 120_000,
    hookTimeout: 120_000,
    teardownTimeout: 60_000,
    reporters: ['default'],
  },
})
