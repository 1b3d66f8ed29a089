// Reconnect and retry delays: exponential growth with "full jitter" (a uniform draw below the
// ceiling), so that thousands of phones cut off together do not come back together, and a server
// that drops every link at once never sees a loop: every delay is drawn, none is a fixed 0.
import { Reconnect } from "./codes.js";

/** Full-jitter exponential backoff, in milliseconds: step n waits uniform(0, min(cap, base·2ⁿ)). */
export interface Backoff {
  base: number;
  cap: number;
}

/** 0.5 s doubling to 20 s, as the reference client. */
export const DEFAULT_BACKOFF: Readonly<Backoff> = Object.freeze({ base: 500, cap: 20_000 });

/** ms a link must stay up after `auth_ok` before its end no longer counts as a failure. */
export const DEFAULT_STABLE_AFTER = 10_000;

/** The largest delay (ms) step `attempt` (0-based) may draw. */
export function backoffCeiling(backoff: Backoff, attempt: number): number {
  return Math.min(backoff.cap, backoff.base * 2 ** Math.min(Math.max(0, attempt), 30));
}

/** A delay (ms) for step `attempt`, drawn with `random` (a function like Math.random). */
export function backoffDelay(backoff: Backoff, attempt: number, random: () => number): number {
  return random() * backoffCeiling(backoff, attempt);
}

/** What decides the wait before the next connection attempt. */
export interface ReconnectInput {
  /** the close code's advice */
  advice: Reconnect;
  /** links in a row that failed or did not stay up (0: the last one was stable, or the app woke us) */
  failures: number;
  /** for a link ended by a sequence gap: how many times in a row that channel needed a resync */
  streak?: number;
  /** the app said the device is offline: keep trying, at the cap */
  offline?: boolean;
}

/**
 * The wait (ms) before the next attempt: full jitter below `min(cap, base·2ⁿ)` with n the failures
 * in a row. "At once" codes (1001, 4008, 4009, a lost link) and new-token codes start at n = 0, so
 * the first retry comes within `base`; backoff codes (1011, 1013, 4029, …) start one step up; a gap
 * that keeps coming back on one channel climbs with its streak; offline draws below the cap.
 */
export function reconnectDelay(backoff: Backoff, input: ReconnectInput, random: () => number): number {
  if (input.offline) return random() * backoff.cap;
  let step = input.failures + (input.advice === Reconnect.BACKOFF ? 1 : 0);
  if (input.streak !== undefined) step = Math.max(step, input.streak - 1);
  return backoffDelay(backoff, step, random);
}
