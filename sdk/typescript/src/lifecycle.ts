// What the platform says about the app and the network (foreground/background, online/offline,
// a network switch), turned into what the client does about it: a small state machine with no
// latch. Offline is only a hint (attempts go on, at the cap); the foreground overrides it; a
// connection that authenticates clears it; the network coming back or the app coming to the
// foreground wakes the client (backoff reset, a first retry soon, an open link probed).

/** What the machine asks of the client. */
export type LifecycleAction =
  /** `client.reconnectNow()`: reset the backoff, retry soon, probe an open link */
  | "wake"
  /** `client.setOffline(true)`: probe an open link; retries wait at the backoff cap */
  | "offline"
  /** `client.setOffline(false)`: retries use the normal backoff again */
  | "online";

/** The machine's state: what it was last told. */
export interface LifecycleState {
  foreground: boolean;
  /** null: not known (no report yet, or the platform could not tell) */
  online: boolean | null;
  /** the network's identity (e.g. NetInfo's `type`: wifi, cellular), to see a switch */
  network: string | null;
}

/** Pure: each input returns the actions to take, and updates the state. */
export class LifecycleMachine {
  readonly state: LifecycleState;

  constructor(initial: Partial<LifecycleState> = {}) {
    this.state = { foreground: true, online: null, network: null, ...initial };
  }

  /** The app came to the foreground (`true`) or left it. Coming back wakes the client and
   *  overrides an offline report (it may be stale: try normally while the user looks). */
  appState(foreground: boolean): LifecycleAction[] {
    const was = this.state.foreground;
    this.state.foreground = foreground;
    return foreground && !was ? ["online", "wake"] : [];
  }

  /** The platform's connectivity report. Back online (or onto another network): wake. Offline:
   *  a hint, repeated as often as the platform says it. Unknown (null): nothing changes. */
  connectivity(online: boolean | null, network: string | null = null): LifecycleAction[] {
    if (online === null) return [];
    const s = this.state;
    const wasOnline = s.online;
    const wasNetwork = s.network;
    s.online = online;
    if (!online) return ["offline"];
    s.network = network;
    if (wasOnline === false) return ["online", "wake"];
    if (wasOnline === true && network !== null && wasNetwork !== null && network !== wasNetwork) return ["wake"];
    return []; // the first report, or the same network again
  }
}

/** What a `Lifecycle` drives: `Client` has both. */
export interface LifecycleClient {
  reconnectNow(): void;
  setOffline(offline: boolean): void;
}

/** A `LifecycleMachine` applied to a client (`client.lifecycle`); the platform hooks feed it. */
export class Lifecycle {
  readonly machine: LifecycleMachine;

  constructor(
    private readonly client: LifecycleClient,
    machine: LifecycleMachine = new LifecycleMachine(),
  ) {
    this.machine = machine;
  }

  appState(foreground: boolean): void {
    this.apply(this.machine.appState(foreground));
  }

  connectivity(online: boolean | null, network: string | null = null): void {
    this.apply(this.machine.connectivity(online, network));
  }

  private apply(actions: LifecycleAction[]): void {
    for (const action of actions) {
      if (action === "wake") this.client.reconnectNow();
      else this.client.setOffline(action === "offline");
    }
  }
}
