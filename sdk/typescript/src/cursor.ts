// One channel's position and the pure rule for each arriving event: deliver it, drop it as a
// duplicate (by event id or by seq), or call it a gap (the client then resyncs with lastSeq);
// plus the channel's trouble streak, which makes a resync that keeps coming back wait longer.
import type { Position } from "./positions.js";
import type { SubscribedFrame, SubscribeFrame } from "./protocol.js";

type SubscribePayload = SubscribeFrame["payload"];

/** Event ids remembered per channel to drop duplicates that carry an unexpected seq. */
export const RECENT_IDS = 1024;

export type Verdict = "deliver" | "duplicate" | "gap";

/** Tracks what the application has received on one channel. No I/O. */
export class ChannelCursor {
  seq: number | null;
  epoch: string | null;
  awaitingSnapshot = false;
  /** resyncs in a row (a gap, a failed listener) that did not get the channel past the trouble */
  streak = 0;
  private trouble: Position | null = null;
  private readonly recent = new Map<string, true>();

  constructor(
    readonly channel: string,
    position: Position | null,
  ) {
    this.seq = position ? position.seq : null;
    this.epoch = position ? position.epoch : null;
  }

  get position(): Position | null {
    return this.seq === null ? null : { seq: this.seq, epoch: this.epoch };
  }

  /** The `subscribe` payload that resumes from this position (live only when there is none). */
  subscribePayload(): SubscribePayload {
    const payload: SubscribePayload = { channel: this.channel };
    if (this.seq !== null) {
      payload.lastSeq = this.seq;
      if (this.epoch !== null) payload.epoch = this.epoch;
    }
    return payload;
  }

  /** Applies a `subscribed` answer: replay continues from here; none/reset start at the head;
   *  snapshot waits for the `snapshot` frame (the position stays the old one until it is applied,
   *  so a resubscribe before that asks for the snapshot again). */
  onSubscribed(mode: SubscribedFrame["payload"]["recovery"], epoch: string, headSeq: number): void {
    this.awaitingSnapshot = false;
    if (mode === "replay") {
      this.epoch = epoch;
      if (this.seq === null) this.seq = 0;
    } else if (mode === "snapshot") {
      this.awaitingSnapshot = true;
      return;
    } else {
      if (mode === "reset" || epoch !== this.epoch) this.recent.clear();
      this.seq = headSeq;
      this.epoch = epoch;
    }
    this.heal();
  }

  onSnapshot(seq: number, epoch: string): void {
    this.seq = seq;
    this.epoch = epoch;
    this.awaitingSnapshot = false;
    this.recent.clear();
    this.heal();
  }

  /** Something at `seq`/`epoch` needs a resync (a gap, a listener that threw): returns how many
   *  times in a row this channel needed one without getting past the trouble. */
  troubleAt(seq: number, epoch: string): number {
    this.trouble = { seq, epoch };
    return ++this.streak;
  }

  /** Decides the fate of one event without changing the position (see `commit`). */
  check(seq: number, epoch: string, eventId: string): Verdict {
    if (this.recent.has(eventId)) return "duplicate";
    if (this.seq === null || this.awaitingSnapshot || epoch !== this.epoch) return "gap";
    if (seq <= this.seq) return "duplicate";
    if (seq !== this.seq + 1) return "gap";
    return "deliver";
  }

  /** Advances the position past an event the application took. */
  commit(seq: number, eventId: string): void {
    this.seq = seq;
    this.recent.set(eventId, true);
    if (this.recent.size > RECENT_IDS) {
      const oldest = this.recent.keys().next().value;
      if (oldest !== undefined) this.recent.delete(oldest);
    }
    this.heal();
  }

  /** The streak ends once the position reached the trouble's seq (or moved to another epoch). */
  private heal(): void {
    const t = this.trouble;
    if (t === null || this.seq === null) return;
    if (this.epoch !== t.epoch || this.seq >= t.seq) {
      this.trouble = null;
      this.streak = 0;
    }
  }
}
