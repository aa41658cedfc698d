// Waiting on other processes and connections, in real time and always with a bound: a test
// whose awaited event never comes fails, naming it, instead of hanging the run. (Logic under
// test never waits on real time: it runs on a ManualClock the test moves.)

/** Polls `f` every `everyMs` until it is true; fails naming `what` (a string, or a function giving the state then) after `ms`. */
export async function waitFor(f: () => boolean | Promise<boolean>, what: string | (() => string), ms = 15_000, everyMs = 20): Promise<void> {
  const deadline = performance.now() + ms;
  while (!(await f())) {
    if (performance.now() > deadline) throw new Error(`timed out after ${ms} ms waiting for ${typeof what === 'string' ? what : what()}`);
    await new Promise((r) => setTimeout(r, everyMs));
  }
}

/** `p`, or a failure naming `what` once `ms` have passed first. */
export async function within<T>(p: Promise<T>, what: string, ms: number): Promise<T> {
  let timer!: NodeJS.Timeout;
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms waiting for ${what}`)), ms);
  });
  try {
    return await Promise.race([p, late]);
  } finally {
    clearTimeout(timer);
  }
}
