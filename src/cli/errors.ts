/** A command line that does not make sense: exit code 2 and a usage hint. */
export class UsageError extends Error {}
