/**
 * V8 flags of the long-running processes that move bulk data (the mount daemon, server
 * nodes). The data live in Buffers outside the JS heap, but the small objects around each
 * RPC that survive a scavenge reach the old generation, whose first limits suit a tiny heap:
 * a 1 GiB write cost the daemon about 47 full mark-compacts. A large young generation and a
 * larger initial old space leave about 15, and cut the daemon's CPU per GiB by a third.
 */
export const DATA_PROCESS_FLAGS = ['--max-semi-space-size=64', '--initial-old-space-size=128']
