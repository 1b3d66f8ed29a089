// Client publishes not yet acknowledged: each keeps its frame id, so a resend after a
// reconnect is the same frame and the server stores it exactly once.
import type { ClientError } from "./errors.js";
import type { PublishedFrame } from "./protocol.js";

/** The server's acknowledgement: where the event landed. */
export interface PublishResult {
  /** the publish frame's id */
  id: string;
  channel: string;
  seq: number;
  epoch: string;
}

/** One publish awaiting its `published` answer. */
export class Pending {
  /** generation of the connection it was last sent on (null: not sent on any live one) */
  sentOn: number | null = null;
  readonly promise: Promise<PublishResult>;
  private settle!: { resolve: (r: PublishResult) => void; reject: (e: ClientError) => void };

  constructor(
    readonly frameId: string,
    readonly wire: string,
    readonly bytes: number,
  ) {
    this.promise = new Promise<PublishResult>((resolve, reject) => {
      this.settle = { resolve, reject };
    });
  }

  resolve(result: PublishResult): void {
    this.settle.resolve(result);
  }

  reject(error: ClientError): void {
    this.settle.reject(error);
  }
}

/** Insertion-ordered pending publishes, keyed by frame id. */
export class Outbox {
  private readonly pending = new Map<string, Pending>();

  get size(): number {
    return this.pending.size;
  }

  get(frameId: string): Pending | undefined {
    return this.pending.get(frameId);
  }

  add(frameId: string, wire: string, bytes: number): Pending {
    const entry = new Pending(frameId, wire, bytes);
    this.pending.set(frameId, entry);
    return entry;
  }

  /** Entries not yet sent on connection `generation`, oldest first. */
  unsent(generation: number): Pending[] {
    return [...this.pending.values()].filter((p) => p.sentOn !== generation);
  }

  resolve(frameId: string, payload: PublishedFrame["payload"]): boolean {
    const entry = this.pending.get(frameId);
    if (entry === undefined) return false;
    this.pending.delete(frameId);
    entry.resolve({ id: frameId, channel: payload.channel, seq: payload.seq, epoch: payload.epoch });
    return true;
  }

  fail(frameId: string, error: ClientError): boolean {
    const entry = this.pending.get(frameId);
    if (entry === undefined) return false;
    this.pending.delete(frameId);
    entry.reject(error);
    return true;
  }

  failAll(error: ClientError): void {
    for (const frameId of [...this.pending.keys()]) this.fail(frameId, error);
  }
}
