// Client publishes not yet acknowledged: each keeps its frame id (the app's own, or a fresh UUID),
// so a resend after a reconnect, or by the next process from a durable store, is the same frame
// and the server stores it exactly once. Bounded in entries and in age.
import type { ClientError } from "./errors.js";
import type { OutboxRecord, OutboxStore } from "./outbox-store.js";
import { frame, utf8Length, type PublishedFrame, type PublishFrame } from "./protocol.js";

/** The server's acknowledgement: where the event landed. */
export interface PublishResult {
  /** the publish frame's id */
  id: string;
  channel: string;
  seq: number;
  epoch: string;
}

/** The outbox's bounds (`ClientOptions.outbox`). */
export interface OutboxLimits {
  /** most unacknowledged publishes kept; one more is refused with `OutboxFull` (default 1000) */
  maxEntries: number;
  /** ms after its creation that an unsent publish is given up (`PublishExpired`, default 24 h).
   *  Keep it below the server's `history_ttl` (72 h by default), the time it remembers a publish id. */
  ttl: number;
}

export const DEFAULT_OUTBOX_LIMITS: Readonly<OutboxLimits> = Object.freeze({ maxEntries: 1000, ttl: 24 * 3600_000 });

/** Frame ids are 1–128 characters (the protocol's limit); a UUID v4 is what the server expects. */
export const MAX_ID_LENGTH = 128;

/** One publish awaiting its `published` answer. */
export class Pending {
  /** generation of the connection it was last sent on (null: not sent on any live one) */
  sentOn: number | null = null;
  /** false while the store is still writing it: it goes out once the store has it */
  ready = false;
  /** refusals with a retryable error so far (the retry's backoff step) */
  retries = 0;
  readonly wire: string;
  readonly bytes: number;
  readonly promise: Promise<PublishResult>;
  private settle!: { resolve: (r: PublishResult) => void; reject: (e: ClientError) => void };

  constructor(
    readonly record: OutboxRecord,
    /** loaded from the store at start: no caller holds its promise */
    readonly restored = false,
  ) {
    const { id, channel, event, data } = record;
    this.wire = JSON.stringify(frame<PublishFrame>("publish", { channel, event, data }, id));
    this.bytes = utf8Length(this.wire);
    this.promise = new Promise<PublishResult>((resolve, reject) => {
      this.settle = { resolve, reject };
    });
    if (restored) this.promise.catch(() => {}); // its outcome is reported as an event
  }

  get frameId(): string {
    return this.record.id;
  }

  resolve(result: PublishResult): void {
    this.settle.resolve(result);
  }

  reject(error: ClientError): void {
    this.settle.reject(error);
  }
}

/** Pending publishes keyed by frame id, oldest first, mirrored into an `OutboxStore`. */
export class Outbox {
  private readonly pending = new Map<string, Pending>();

  constructor(
    private readonly store: OutboxStore | null,
    readonly limits: OutboxLimits,
    private readonly storeFailed: (error: unknown) => void,
  ) {}

  get size(): number {
    return this.pending.size;
  }

  get(frameId: string): Pending | undefined {
    return this.pending.get(frameId);
  }

  /** Adds `entry` and hands it to the store; `ready` runs once the store has it (or failed to). */
  add(entry: Pending, ready: (entry: Pending) => void): void {
    this.pending.set(entry.frameId, entry);
    const done = (): void => {
      entry.ready = true;
      if (this.pending.get(entry.frameId) === entry) ready(entry);
    };
    if (entry.restored || this.store === null) {
      done();
      return;
    }
    this.call(() => this.store!.add(entry.record), done);
  }

  /** The store's records (none without a store); a failing store is reported and yields none. */
  async load(): Promise<OutboxRecord[]> {
    if (this.store === null) return [];
    try {
      return await this.store.load();
    } catch (error) {
      this.storeFailed(error);
      return [];
    }
  }

  /** Whether `entry` is older than the TTL (wall clock: its age survives a restart). */
  expired(entry: Pending): boolean {
    return Date.now() - entry.record.createdAt > this.limits.ttl;
  }

  /** Entries ready and not yet sent on connection `generation`, oldest first. */
  unsent(generation: number): Pending[] {
    return [...this.pending.values()]
      .filter((p) => p.ready && p.sentOn !== generation)
      .sort((a, b) => a.record.createdAt - b.record.createdAt);
  }

  /** Entries sent on connection `generation` and not answered yet. */
  inFlight(generation: number): Pending[] {
    return [...this.pending.values()].filter((p) => p.sentOn === generation);
  }

  resolve(frameId: string, payload: PublishedFrame["payload"]): Pending | undefined {
    const entry = this.take(frameId);
    entry?.resolve({ id: frameId, channel: payload.channel, seq: payload.seq, epoch: payload.epoch });
    return entry;
  }

  /** Gives the publish up for good (removed from the store). */
  fail(frameId: string, error: ClientError): Pending | undefined {
    const entry = this.take(frameId);
    entry?.reject(error);
    return entry;
  }

  /** The client stops: every promise rejects, the store keeps the entries for the next client. */
  failAll(error: ClientError): void {
    const entries = [...this.pending.values()];
    this.pending.clear();
    for (const entry of entries) entry.reject(error);
  }

  private take(frameId: string): Pending | undefined {
    const entry = this.pending.get(frameId);
    if (entry === undefined) return undefined;
    this.pending.delete(frameId);
    if (this.store !== null) this.call(() => this.store!.remove(frameId));
    return entry;
  }

  private call(fn: () => void | Promise<void>, after: () => void = () => {}): void {
    const failed = (error: unknown): void => {
      this.storeFailed(error);
      after();
    };
    try {
      const result = fn();
      if (result instanceof Promise) result.then(after, failed);
      else after();
    } catch (error) {
      failed(error);
    }
  }
}
