// The slice of the WebSocket API the client uses: browsers' and React Native's `WebSocket`
// have it, and so does Node's `ws` package, which Node apps pass in.

/** The WebSocket the client drives (a browser's, React Native's, or `ws`'s). */
export interface WebSocketLike {
  readonly readyState: number;
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  onopen: ((event: any) => void) | null;
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  onmessage: ((event: any) => void) | null;
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  onclose: ((event: any) => void) | null;
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  onerror: ((event: any) => void) | null;
  send(data: string): void;
  close(code?: number, reason?: string): void;
  /** `ws` only: drop the TCP connection without a closing handshake (for a dead link). */
  terminate?(): void;
}

/** A WebSocket class: `globalThis.WebSocket`, or `WebSocket` from the `ws` package on Node. */
export type WebSocketConstructor = new (url: string) => WebSocketLike;

/** `readyState` of an open socket (the same number on every platform). */
export const OPEN = 1;
