// Reconnect delays: exponential growth with "full jitter" (a uniform draw below the ceiling),
// so that thousands of phones cut off together do not come back together.

/** Full-jitter exponential backoff, in milliseconds: attempt n waits uniform(0, min(cap, base·2ⁿ)). */
export interface Backoff {
  base: number;
  cap: number;
}

/** 0.5 s doubling to 20 s, as the reference client. */
export const DEFAULT_BACKOFF: Readonly<Backoff> = Object.freeze({ base: 500, cap: 20_000 });

/** The largest delay (ms) attempt `attempt` (0-based) may draw. */
export function backoffCeiling(backoff: Backoff, attempt: number): number {
  return Math.min(backoff.cap, backoff.base * 2 ** Math.min(attempt, 30));
}

/** A delay (ms) for attempt `attempt`, drawn with `random` (a function like Math.random). */
export function backoffDelay(backoff: Backoff, attempt: number, random: () => number): number {
  return random() * backoffCeiling(backoff, attempt);
}
