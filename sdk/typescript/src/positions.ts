// Where the client keeps each channel's position (lastSeq and epoch): the interface an app backs
// with its own storage, the in-memory default, and adapters for localStorage and AsyncStorage.

/** The last event the application received on a channel: its `seq` and the log's `epoch`. */
export interface Position {
  seq: number;
  epoch: string | null;
}

/**
 * Persists channel positions. `save` is called on every delivered event, snapshot and reset and
 * is not awaited (the client's own copy is the truth while it runs): make it quick or write-behind.
 * `load` runs once per `subscribe` and may be async.
 */
export interface PositionStore {
  load(channel: string): Position | null | undefined | Promise<Position | null | undefined>;
  save(channel: string, position: Position): void | Promise<void>;
  forget(channel: string): void | Promise<void>;
}

/** The default store: a Map, lost when the page or process ends. */
export class MemoryPositionStore implements PositionStore {
  private readonly positions = new Map<string, Position>();

  load(channel: string): Position | null {
    return this.positions.get(channel) ?? null;
  }

  save(channel: string, position: Position): void {
    this.positions.set(channel, { seq: position.seq, epoch: position.epoch });
  }

  forget(channel: string): void {
    this.positions.delete(channel);
  }
}

/** The synchronous Web Storage API (`window.localStorage`, `sessionStorage`). */
export interface StorageLike {
  getItem(key: string): string | null;
  setItem(key: string, value: string): void;
  removeItem(key: string): void;
}

/** The asynchronous key-value API of React Native's `@react-native-async-storage/async-storage`. */
export interface AsyncStorageLike {
  getItem(key: string): Promise<string | null>;
  setItem(key: string, value: string): Promise<void>;
  removeItem(key: string): Promise<void>;
}

function parse(raw: string | null): Position | null {
  if (raw === null) return null;
  try {
    const value = JSON.parse(raw) as { seq?: unknown; epoch?: unknown };
    if (typeof value.seq !== "number" || !Number.isInteger(value.seq) || value.seq < 0) return null;
    return { seq: value.seq, epoch: typeof value.epoch === "string" ? value.epoch : null };
  } catch {
    return null; // a corrupt entry is as good as none: the channel resumes live or from the app's lastSeq
  }
}

/** Positions in Web Storage (e.g. `new WebStoragePositionStore(window.localStorage)`), one key per channel. */
export class WebStoragePositionStore implements PositionStore {
  constructor(
    private readonly storage: StorageLike,
    private readonly prefix = "wsserver.position:",
  ) {}

  load(channel: string): Position | null {
    return parse(this.storage.getItem(this.prefix + channel));
  }

  save(channel: string, position: Position): void {
    this.storage.setItem(this.prefix + channel, JSON.stringify(position));
  }

  forget(channel: string): void {
    this.storage.removeItem(this.prefix + channel);
  }
}

/**
 * Positions in React Native's AsyncStorage, written behind: at most one write per channel in
 * flight, and a burst of saves collapses into one write of the latest position.
 */
export class AsyncStoragePositionStore implements PositionStore {
  private readonly latest = new Map<string, Position | null>();
  private readonly writing = new Set<string>();

  constructor(
    private readonly storage: AsyncStorageLike,
    private readonly prefix = "wsserver.position:",
    private readonly onError: (error: unknown) => void = () => {},
  ) {}

  async load(channel: string): Promise<Position | null> {
    if (this.latest.has(channel)) return this.latest.get(channel) ?? null;
    return parse(await this.storage.getItem(this.prefix + channel));
  }

  save(channel: string, position: Position): void {
    this.latest.set(channel, { seq: position.seq, epoch: position.epoch });
    this.flush(channel);
  }

  forget(channel: string): void {
    this.latest.set(channel, null);
    this.flush(channel);
  }

  /** Resolves once every position saved so far is written. */
  async drain(): Promise<void> {
    while (this.writing.size > 0) await new Promise((resolve) => setTimeout(resolve, 5));
  }

  private flush(channel: string): void {
    if (this.writing.has(channel)) return; // the running writer picks up the latest value
    this.writing.add(channel);
    const write = async (): Promise<void> => {
      let written: Position | null | undefined;
      try {
        while (this.latest.get(channel) !== written) {
          written = this.latest.get(channel);
          const key = this.prefix + channel;
          if (written === null || written === undefined) await this.storage.removeItem(key);
          else await this.storage.setItem(key, JSON.stringify(written));
        }
      } catch (error) {
        try {
          this.onError(error);
        } catch {
          // the app's error callback failed too: nothing is left to report it with
        }
      } finally {
        this.writing.delete(channel);
      }
    };
    void write();
  }
}
