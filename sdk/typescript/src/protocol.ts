// The wire frames: the types generated from docs/schema (re-exported), and builders for the
// frames the client sends, with UUID v4 ids that work in browsers, React Native and Node.
import type { ClientFrame } from "./generated/protocol.js";

export type * from "./generated/protocol.js";

interface CryptoLike {
  randomUUID?: () => string;
  getRandomValues?: <T extends Uint8Array>(array: T) => T;
}

/** A UUID v4: `crypto.randomUUID` where the platform has it (React Native may not), else built from random bytes. */
export function newId(): string {
  const c = (globalThis as { crypto?: CryptoLike }).crypto;
  if (c?.randomUUID) return c.randomUUID();
  const bytes = new Uint8Array(16);
  if (c?.getRandomValues) c.getRandomValues(bytes);
  else for (let i = 0; i < 16; i++) bytes[i] = Math.floor(Math.random() * 256);
  bytes[6] = (bytes[6] & 0x0f) | 0x40;
  bytes[8] = (bytes[8] & 0x3f) | 0x80;
  const hex = Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
}

/** A client frame of `type` with a fresh id (or `id`, for a resend) and the current time. */
export function frame<F extends ClientFrame>(type: F["type"], payload: F["payload"], id?: string): F {
  return { type, id: id ?? newId(), timestamp: Date.now(), payload } as F;
}

/** Bytes of `text` in UTF-8 (what `maxMessageSize` counts), without TextEncoder (absent on older React Native). */
export function utf8Length(text: string): number {
  let bytes = 0;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c < 0x80) bytes += 1;
    else if (c < 0x800) bytes += 2;
    else if (c >= 0xd800 && c <= 0xdbff && i + 1 < text.length) {
      bytes += 4;
      i++;
    } else bytes += 3;
  }
  return bytes;
}
