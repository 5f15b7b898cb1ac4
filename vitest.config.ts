import { defineConfig } from 'vitest/config'

// Suites run in separate processes (they start servers, mounts and kill nodes); files run in
// parallel, each on its own loopback addresses and port.
export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    pool: 'forks',
    testTimeout: 120_000,
    hookTimeout: 120_000,
    teardownTimeout: 60_000,
    reporters: ['default'],
  },
})
