// "Reconnect now" hooks: the browser's `online`/`offline`/`visibilitychange` and React Native's
// AppState tell the client when a link may have died unseen or the network is back.

/** What the hooks call: `Client.reconnectNow`. */
export interface Reconnectable {
  reconnectNow(): void;
}

interface EventTargetLike {
  addEventListener(type: string, listener: () => void): void;
  removeEventListener(type: string, listener: () => void): void;
}

interface DocumentLike extends EventTargetLike {
  visibilityState?: string;
}

/**
 * Browsers: `online` (the network is back), `offline` (the link is probably dead: probe it) and
 * `visibilitychange` to visible (timers were throttled while hidden) call `client.reconnectNow()`.
 * Returns a function that removes the listeners.
 */
export function attachBrowserHooks(
  client: Reconnectable,
  win: EventTargetLike | undefined = globalThis as unknown as EventTargetLike,
  doc: DocumentLike | undefined = (globalThis as { document?: DocumentLike }).document,
): () => void {
  const now = (): void => client.reconnectNow();
  const visible = (): void => {
    if (doc?.visibilityState === "visible") client.reconnectNow();
  };
  win?.addEventListener("online", now);
  win?.addEventListener("offline", now);
  doc?.addEventListener("visibilitychange", visible);
  return () => {
    win?.removeEventListener("online", now);
    win?.removeEventListener("offline", now);
    doc?.removeEventListener("visibilitychange", visible);
  };
}

/** React Native's `AppState` (from "react-native"). */
export interface AppStateLike {
  addEventListener(type: "change", listener: (state: string) => void): { remove(): void };
}

/** React Native: coming back to the foreground (`active`) calls `client.reconnectNow()`.
 *  Returns a function that removes the listener. */
export function attachAppStateHooks(client: Reconnectable, appState: AppStateLike): () => void {
  const subscription = appState.addEventListener("change", (state) => {
    if (state === "active") client.reconnectNow();
  });
  return () => subscription.remove();
}
