/**
 * Fitting a key's sibling set to the wire limits, for partition sync. Puts keep sets within their bounds and the
 * wire limits sit far above those (see `limitsFor`), yet a set can still outgrow one message: merges of writes that
 * different coordinators accepted, data stored under larger limits, or versions from before a limit existed (a
 * counter above MAX_COUNTER). Sent as is, such a key would make every peer's decoder refuse the page that holds it,
 * and sync would ask for the same page forever. Instead it travels as several entries of the same key, each within
 * the limits; only versions that no decoder accepts are withheld, and they stay with the sender.
 *
 * Parts take the versions in ascending order of their dot's counter, and a version is withheld together with every
 * later version of the same coordinator. So whatever prefix of the parts a receiver holds keeps the invariant of
 * version.ts: holding a coordinator's dot `x:n` of a key means holding (or superseding) its earlier dots of the key.
 */
import { MAX_CLOCK_ENTRIES, isCounter } from '../versions/vclock.ts';
import type { Version } from '../versions/version.ts';
import { MESSAGE_OVERHEAD, type ProtocolLimits, type SyncEntry } from './protocol.ts';

/** The bytes `version` takes in a frame, at most: map keys, headers, its dot, its context and its value. */
export function versionWireBytes(version: Version): number {
  // {dot, context, value}: 27 bytes of map header, keys and container headers; 44 per clock entry besides its id.
  let size = 71 + version.dot.node.length + (version.value?.byteLength ?? 0);
  const context = version.context;
  for (let i = 0; i < context.length; i++) size += 44 + context[i]!.node.length;
  return size;
}

/** The bytes a sync entry of `key` takes in a frame besides its versions, at most. */
function entryHeadBytes(key: Uint8Array): number {
  return 24 + key.byteLength;
}

/** The bytes `entry` takes in a frame, at most. */
export function entryWireBytes(entry: SyncEntry): number {
  let size = entryHeadBytes(entry.key);
  for (const v of entry.versions) size += versionWireBytes(v);
  return size;
}

/** The most bytes of entries one message may carry under `limits`. */
export function messageRoom(limits: ProtocolLimits): number {
  return Math.max(1024, limits.maxFrameBytes - MESSAGE_OVERHEAD);
}

/** True when a decoder with `limits` accepts `version`. */
export function sendable(version: Version, limits: ProtocolLimits): boolean {
  if (version.value !== null && version.value.byteLength > limits.maxValueBytes) return false;
  if (!isCounter(version.dot.counter)) return false;
  const context = version.context;
  if (context.length > MAX_CLOCK_ENTRIES) return false;
  for (let i = 0; i < context.length; i++) if (!isCounter(context[i]!.counter)) return false;
  return true;
}

/** A key cut to the wire limits. */
export interface Fitted {
  /** Entries of the key, each within the limits and within one message; empty when nothing can be sent. */
  readonly parts: SyncEntry[];
  /** Bytes of the parts in a frame, at most. */
  readonly bytes: number;
  /** Versions left out: not sendable, after a coordinator's unsendable one, or past `totalBytes`. */
  readonly withheld: number;
}

/**
 * `entry` as entries that decoders with `limits` accept, each small enough for a message of its own, in all at most
 * `totalBytes` (pass the room of one message when every part must travel together). The entry itself when it
 * already fits.
 */
export function fitEntry(entry: SyncEntry, limits: ProtocolLimits, totalBytes = Infinity): Fitted {
  const room = messageRoom(limits);
  const head = entryHeadBytes(entry.key);
  const versions = entry.versions;
  if (entry.key.byteLength > limits.maxKeyBytes) return { parts: [], bytes: 0, withheld: versions.length };
  if (versions.length <= limits.maxSiblings) {
    let bytes = head;
    let fits = true;
    for (let i = 0; i < versions.length && fits; i++) {
      bytes += versionWireBytes(versions[i]!);
      fits = sendable(versions[i]!, limits);
    }
    if (fits && bytes <= room && bytes <= totalBytes) return { parts: [entry], bytes, withheld: 0 };
  }
  const sorted = [...versions].sort(
    (a, b) => a.dot.counter - b.dot.counter || (a.dot.node < b.dot.node ? -1 : a.dot.node > b.dot.node ? 1 : 0),
  );
  const blocked = new Set<string>();
  const parts: SyncEntry[] = [];
  let part: Version[] = [];
  let partBytes = head;
  let bytes = 0;
  let withheld = 0;
  let full = false;
  for (const v of sorted) {
    const size = versionWireBytes(v);
    if (full || blocked.has(v.dot.node) || !sendable(v, limits) || head + size > room) {
      blocked.add(v.dot.node);
      withheld++;
      continue;
    }
    if (part.length > 0 && (part.length >= limits.maxSiblings || partBytes + size > room)) {
      parts.push({ key: entry.key, versions: part });
      bytes += partBytes;
      part = [];
      partBytes = head;
    }
    if (bytes + partBytes + size > totalBytes) {
      // What is left goes in a later message, which only a pushing sender has: the rest is withheld.
      full = true;
      withheld++;
      continue;
    }
    part.push(v);
    partBytes += size;
  }
  if (part.length > 0) {
    parts.push({ key: entry.key, versions: part });
    bytes += partBytes;
  }
  return { parts, bytes, withheld };
}

/**
 * The slowest transfer a message is allowed before its request times out, in bytes per ms: 1 MB/s. Tabs on one
 * loaded 2-core machine move 3 to 6 MB/s per data channel, the receiver's decoding and storage write included, and
 * less when several large messages travel at once.
 */
export const FLOOR_BYTES_PER_MS = 1024;

/**
 * The timeout of a request that carries `versions`: the per-node timeout, plus the time the message may take to
 * travel and be stored at the floor rate. A legal key of a few MiB must not time out only because it is large (the
 * coordinator would count its replicas as failed, and hinted handoff would retry it forever); a small message
 * keeps the plain timeout.
 */
export function carryingTimeout(timeoutMs: number, versions: readonly Version[]): number {
  let bytes = 0;
  for (let i = 0; i < versions.length; i++) bytes += versions[i]!.value?.byteLength ?? 0;
  return timeoutMs + Math.floor(bytes / FLOOR_BYTES_PER_MS);
}
