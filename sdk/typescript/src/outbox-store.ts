// Where unacknowledged publishes live so that they survive the process: the interface an app
// backs with its own storage, the in-memory default, and adapters for localStorage and AsyncStorage.
import type { AsyncStorageLike, StorageLike } from "./positions.js";

/** One publish the server has not acknowledged yet, as kept by an `OutboxStore`. */
export interface OutboxRecord {
  /** the publish frame's id: the idempotency key the server answers the same way every time */
  id: string;
  channel: string;
  event: string;
  data: Record<string, unknown>;
  /** ms since the Unix epoch (wall clock: it must mean the same after a restart) */
  createdAt: number;
}

/**
 * Keeps unacknowledged publishes. `add` runs when the app publishes (the frame goes out once it
 * settled), `remove` once the server answered for good; neither is ever called for an entry the
 * client merely stopped with. `load` runs once, when the client starts. Each may return a Promise.
 */
export interface OutboxStore {
  load(): OutboxRecord[] | Promise<OutboxRecord[]>;
  add(record: OutboxRecord): void | Promise<void>;
  remove(id: string): void | Promise<void>;
}

/** Kept in memory: survives a `close()` and a new `Client` on the same store, not the process. */
export class MemoryOutboxStore implements OutboxStore {
  private readonly records = new Map<string, OutboxRecord>();

  load(): OutboxRecord[] {
    return [...this.records.values()];
  }

  add(record: OutboxRecord): void {
    this.records.set(record.id, record);
  }

  remove(id: string): void {
    this.records.delete(id);
  }
}

function isRecord(value: unknown): value is OutboxRecord {
  if (typeof value !== "object" || value === null) return false;
  const r = value as Record<string, unknown>;
  return (
    typeof r.id === "string" &&
    r.id.length > 0 &&
    typeof r.channel === "string" &&
    typeof r.event === "string" &&
    typeof r.data === "object" &&
    r.data !== null &&
    !Array.isArray(r.data) &&
    typeof r.createdAt === "number"
  );
}

/** The records in a stored JSON array; a corrupt value or entry is dropped, never thrown. */
function parseRecords(raw: string | null): Map<string, OutboxRecord> {
  const records = new Map<string, OutboxRecord>();
  if (raw === null) return records;
  try {
    const list: unknown = JSON.parse(raw);
    if (Array.isArray(list)) for (const r of list) if (isRecord(r)) records.set(r.id, r);
  } catch {
    // corrupt: as good as empty
  }
  return records;
}

/** The outbox in Web Storage (e.g. `new WebStorageOutboxStore(window.localStorage)`), one key
 *  holding a JSON array: meant for tens to hundreds of entries (see `outbox.maxEntries`). */
export class WebStorageOutboxStore implements OutboxStore {
  constructor(
    private readonly storage: StorageLike,
    private readonly key = "wsserver.outbox",
  ) {}

  load(): OutboxRecord[] {
    return [...parseRecords(this.storage.getItem(this.key)).values()];
  }

  add(record: OutboxRecord): void {
    const records = parseRecords(this.storage.getItem(this.key));
    records.set(record.id, record);
    this.storage.setItem(this.key, JSON.stringify([...records.values()]));
  }

  remove(id: string): void {
    const records = parseRecords(this.storage.getItem(this.key));
    if (records.delete(id)) this.storage.setItem(this.key, JSON.stringify([...records.values()]));
  }
}

/**
 * The outbox in React Native's AsyncStorage, one key holding a JSON array, written behind: one
 * write in flight, and changes made meanwhile go out together in the next one. `add` resolves
 * once a write that includes the record finished.
 */
export class AsyncStorageOutboxStore implements OutboxStore {
  private records: Promise<Map<string, OutboxRecord>> | null = null;
  private inFlight: Promise<void> = Promise.resolve();
  private next: Promise<void> | null = null;

  constructor(
    private readonly storage: AsyncStorageLike,
    private readonly key = "wsserver.outbox",
  ) {}

  async load(): Promise<OutboxRecord[]> {
    return [...(await this.loaded()).values()];
  }

  async add(record: OutboxRecord): Promise<void> {
    (await this.loaded()).set(record.id, record);
    await this.flush();
  }

  async remove(id: string): Promise<void> {
    if ((await this.loaded()).delete(id)) await this.flush();
  }

  private loaded(): Promise<Map<string, OutboxRecord>> {
    if (this.records === null) {
      const loading = this.storage.getItem(this.key).then(parseRecords);
      loading.catch(() => {
        if (this.records === loading) this.records = null; // a failed read is retried next time
      });
      this.records = loading;
    }
    return this.records;
  }

  /** A write of the records as they are when it starts, after the one in flight. */
  private flush(): Promise<void> {
    if (this.next === null) {
      const write = this.inFlight
        .catch(() => {})
        .then(async () => {
          this.next = null; // changes from now on need another write
          const records = await this.loaded();
          await this.storage.setItem(this.key, JSON.stringify([...records.values()]));
        });
      this.next = write;
      this.inFlight = write;
    }
    return this.next;
  }
}
