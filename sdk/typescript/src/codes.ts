// The close codes of the wire protocol (CONTRACT §4) and what the client does after each;
// a copy of the server's table (wsserver/codes.py) that test/units.test.mjs keeps equal to it.

/** What the client does after a connection ends with a given close code. */
export const Reconnect = {
  /** stop: the application must act (or it asked to close) */
  NEVER: "never",
  /** reconnect immediately (then with backoff if it keeps failing) */
  AT_ONCE: "at_once",
  /** reconnect after a full-jitter exponential delay */
  BACKOFF: "backoff",
  /** ask the token provider for a new token, then reconnect */
  NEW_TOKEN: "new_token",
} as const;
export type Reconnect = (typeof Reconnect)[keyof typeof Reconnect];

/** Close code → advice, exactly as the server's `CloseCode(...).reconnect`. */
export const CLOSE_ADVICE: Readonly<Record<number, Reconnect>> = Object.freeze({
  1000: Reconnect.NEVER,
  1001: Reconnect.AT_ONCE,
  1009: Reconnect.BACKOFF,
  1011: Reconnect.BACKOFF,
  1013: Reconnect.BACKOFF,
  4001: Reconnect.NEW_TOKEN,
  4002: Reconnect.NEW_TOKEN,
  4003: Reconnect.NEVER,
  4008: Reconnect.AT_ONCE,
  4009: Reconnect.AT_ONCE,
  4029: Reconnect.BACKOFF,
});

/** The code reported when the link ended without a close frame (RFC 6455 "abnormal"). */
export const ABNORMAL = 1006;
/** Close code of a frame above the server's `maxMessageSize`. */
export const MESSAGE_TOO_BIG = 1009;
/** Close code of a rejected token (the only one where a repeated token means "give up"). */
export const AUTH_FAILED = 4001;

/** The advice for `code`; a lost link (1006) is retried at once, other unknown codes with backoff. */
export function adviceFor(code: number): Reconnect {
  const advice = CLOSE_ADVICE[code];
  if (advice !== undefined) return advice;
  return code === ABNORMAL ? Reconnect.AT_ONCE : Reconnect.BACKOFF;
}
