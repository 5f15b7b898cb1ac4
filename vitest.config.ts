import { defineConfig } from 'vitest/config'

// Suites run in separate processes (they start servers, mounts and kill nodes); files run in
// parallel, each on its own loopback addresses and port. Two at a time even on two cores
// (vitest's default is one fewer than the cores): most of a suite's time is spent waiting on
// timeouts, recovery windows and Pacemaker, not computing.
export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    pool: 'forks',
    poolOptions: { forks: { maxForks: 2, minForks: 1 } },
    testTimeout: 120_000,
    hookTimeout: 120_000,
    teardownTimeout: 60_000,
    reporters: ['default'],
  },
})
