// Platform glue: the browser's `online`/`offline`/`visibilitychange`, React Native's AppState and
// NetInfo (`@react-native-community/netinfo`, passed in by the app: no dependency here) feed the
// client's lifecycle state machine (`client.lifecycle`, see lifecycle.ts).
import type { Lifecycle } from "./lifecycle.js";

/** Anything with a lifecycle to feed: a `Client`. */
export interface HasLifecycle {
  readonly lifecycle: Pick<Lifecycle, "appState" | "connectivity">;
}

interface EventTargetLike {
  addEventListener(type: string, listener: () => void): void;
  removeEventListener(type: string, listener: () => void): void;
}

interface DocumentLike extends EventTargetLike {
  visibilityState?: string;
}

/**
 * Browsers: `online`/`offline` are connectivity reports, `visibilitychange` foreground and
 * background (timers are throttled while hidden, so coming back wakes the client).
 * Returns a function that removes the listeners.
 */
export function attachBrowserHooks(
  client: HasLifecycle,
  win: EventTargetLike | undefined = globalThis as unknown as EventTargetLike,
  doc: DocumentLike | undefined = (globalThis as { document?: DocumentLike }).document,
): () => void {
  const lifecycle = client.lifecycle;
  const online = (): void => lifecycle.connectivity(true);
  const offline = (): void => lifecycle.connectivity(false);
  const visibility = (): void => lifecycle.appState(doc?.visibilityState !== "hidden");
  if (doc?.visibilityState !== undefined) visibility(); // a page that starts hidden
  win?.addEventListener("online", online);
  win?.addEventListener("offline", offline);
  doc?.addEventListener("visibilitychange", visibility);
  return () => {
    win?.removeEventListener("online", online);
    win?.removeEventListener("offline", offline);
    doc?.removeEventListener("visibilitychange", visibility);
  };
}

/** React Native's `AppState` (from "react-native"). */
export interface AppStateLike {
  currentState?: string | null;
  addEventListener(type: "change", listener: (state: string) => void): { remove(): void };
}

/** React Native: `active` is the foreground, `background` leaves it (iOS's passing `inactive`
 *  changes nothing). Returns a function that removes the listener. */
export function attachAppStateHooks(client: HasLifecycle, appState: AppStateLike): () => void {
  const lifecycle = client.lifecycle;
  const changed = (state: string | null | undefined): void => {
    if (state === "active") lifecycle.appState(true);
    else if (state === "background") lifecycle.appState(false);
  };
  changed(appState.currentState); // an app that starts in the background
  const subscription = appState.addEventListener("change", changed);
  return () => subscription.remove();
}

/** The part of a `@react-native-community/netinfo` state the client reads. */
export interface NetInfoStateLike {
  type: string;
  isConnected: boolean | null;
  isInternetReachable?: boolean | null;
}

/** `@react-native-community/netinfo`'s default export (`NetInfo`). */
export interface NetInfoLike {
  addEventListener(listener: (state: NetInfoStateLike) => void): () => void;
}

/**
 * React Native connectivity through NetInfo: not connected (or the internet known unreachable) is
 * an offline hint; connected again, or connected through another network `type` (Wi-Fi ⇄
 * cellular), wakes the client. Returns NetInfo's unsubscribe.
 */
export function attachNetInfo(client: HasLifecycle, netInfo: NetInfoLike): () => void {
  const lifecycle = client.lifecycle;
  return netInfo.addEventListener((state) => {
    const online = state.isConnected === false || state.isInternetReachable === false ? false : state.isConnected;
    lifecycle.connectivity(online, state.type);
  });
}
