/** Polls `fn` until it holds, failing after `ms`: a condition with a deadline, never a sleep standing in for one. */
export async function pollUntil(what: string, fn: () => Promise<boolean> | boolean, ms = 5000, everyMs = 10): Promise<void> {
  const end = performance.now() + ms
  while (!(await fn())) {
    if (performance.now() > end) throw new Error(`not within ${ms} ms: ${what}`)
    await new Promise((r) => setTimeout(r, everyMs))
  }
}
