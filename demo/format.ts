/**
 * Pure helpers of the demo page: how typed text becomes a stored value, how stored values, contexts and sizes read
 * on screen, how siblings merge, and which colour each member wears.
 */
import { type ReadValue, type Value, type ViewMember, isUndecodable } from '../client/index.ts';
import { decodeContext } from '../worker/wire/context.ts';

/** A value typed into the page, and how it was read. */
export interface ParsedValue {
  readonly value: Value;
  /** `json` when the text parses as JSON, else `text`: the text itself is stored as a string. */
  readonly kind: 'json' | 'text';
}

/** Text as JSON when it parses, else as the string itself: `42` stores a number, `hello` the text "hello". */
export function parseValueInput(text: string): ParsedValue {
  const trimmed = text.trim();
  if (trimmed !== '') {
    try {
      return { value: JSON.parse(trimmed) as Value, kind: 'json' };
    } catch {
      // Not JSON: stored as typed.
    }
  }
  return { value: text, kind: 'text' };
}

/** What a stored value is, in a word or two: "text", "JSON object", "bytes (12)"… */
export function describeValue(value: ReadValue): string {
  if (isUndecodable(value)) return `undecodable (${value.bytes.length} bytes)`;
  if (typeof value === 'string') return 'text';
  if (value instanceof Uint8Array) return `bytes (${value.length})`;
  if (Array.isArray(value)) return `JSON array (${value.length})`;
  if (value === null) return 'JSON null';
  return `JSON ${typeof value}`;
}

function hex(bytes: Uint8Array, max = 64): string {
  const shown = [...bytes.subarray(0, max)].map((b) => b.toString(16).padStart(2, '0')).join(' ');
  return bytes.length > max ? `${shown} … (${bytes.length} bytes)` : shown;
}

/** Longest JSON the page shows on one line; longer values are indented. @default 72 */
export const ONE_LINE_JSON = 72;

function toJson(value: Value, indent?: number): string {
  return JSON.stringify(value, (_key, v: unknown) => (v instanceof Uint8Array ? `<bytes ${hex(v, 16)}>` : v), indent);
}

/** A stored value as the page shows it: text as is, bytes in hex, anything else as JSON, indented when long. */
export function formatValue(value: ReadValue): string {
  if (isUndecodable(value)) return `${hex(value.bytes)}\n(${value.reason})`;
  if (typeof value === 'string') return value;
  if (value instanceof Uint8Array) return hex(value);
  const flat = toJson(value);
  return flat.length <= ONE_LINE_JSON ? flat : toJson(value, 2);
}

/**
 * A value as text that the value field parses back to it: strings as typed (quoted when they would read as JSON).
 * Bytes become an array of numbers, as the field has no way to type bytes.
 */
export function valueToInput(value: ReadValue): string {
  if (isUndecodable(value)) return '';
  if (typeof value === 'string') return parseValueInput(value).kind === 'text' ? value : JSON.stringify(value);
  if (value instanceof Uint8Array) return JSON.stringify([...value]);
  return formatValue(value);
}

function identity(value: Value): string {
  return value instanceof Uint8Array ? `bytes:${hex(value, value.length)}` : JSON.stringify(value);
}

/**
 * One value that keeps what every sibling added, the shopping-cart merge: the union of the siblings' elements when
 * they are arrays, each other sibling counted as one element; first-seen order, duplicates dropped.
 */
export function mergeSiblings(values: readonly ReadValue[]): Value {
  // A sibling the page cannot decode has nothing to merge: it is left out, and the put over the read replaces it.
  const decoded = values.filter((v): v is Value => !isUndecodable(v));
  if (decoded.length === 1) return decoded[0]!;
  const seen = new Set<string>();
  const merged: Value[] = [];
  for (const value of decoded) {
    for (const element of Array.isArray(value) ? (value as readonly Value[]) : [value]) {
      const id = identity(element);
      if (seen.has(id)) continue;
      seen.add(id);
      merged.push(element);
    }
  }
  return merged;
}

/** One entry of a context's vector clock, as the page lists it. */
export interface ClockView {
  readonly node: string;
  readonly counter: number;
}

/** The vector clock inside an opaque context, or null when the string is not a context. */
export function clockOf(context: string): ClockView[] | null {
  try {
    return decodeContext(context).map(({ node, counter }) => ({ node, counter }));
  } catch {
    return null;
  }
}

/** `1.2 KiB`, `3.4 MiB`. */
export function formatBytes(bytes: number): string {
  if (bytes < 1024) return `${bytes} B`;
  const units = ['KiB', 'MiB', 'GiB'];
  let value = bytes / 1024;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit++;
  }
  return `${value.toFixed(value < 10 ? 1 : 0)} ${units[unit]}`;
}

/** Milliseconds with the precision a latency deserves. */
export function formatMs(ms: number): string {
  if (!Number.isFinite(ms)) return '–';
  return ms < 10 ? `${ms.toFixed(1)} ms` : `${Math.round(ms)} ms`;
}

/** `12:03:04.512`, local time. */
export function formatTime(time: number): string {
  const d = new Date(time);
  const pad = (n: number, width = 2): string => String(n).padStart(width, '0');
  return `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}.${pad(d.getMilliseconds(), 3)}`;
}

/**
 * Member colours, chosen to stay apart from each other on the page's dark background (blue, orange, green, red,
 * violet, yellow, cyan, pink). Past eight members, colours are spread around the hue circle.
 */
export const PALETTE = [
  '#5b9cf5',
  '#f59e3b',
  '#4cc47a',
  '#e8443a',
  '#b48cf2',
  '#f2d04b',
  '#3fd0d4',
  '#f9a8d4',
] as const;

function hash(text: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < text.length; i++) h = Math.imul(h ^ text.charCodeAt(i), 0x01000193);
  return h >>> 0;
}

/**
 * A colour per member, the same in every tab that has the same view: members are served in join order (server
 * time, then id), each taking the first free palette colour from the one its id hashes to. Earlier members keep
 * their colour when others join.
 */
export function memberColors(members: readonly ViewMember[]): Map<string, string> {
  const colors = new Map<string, string>();
  const taken = new Set<number>();
  const ordered = [...members].sort((a, b) => a.joinedAt - b.joinedAt || (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
  for (const member of ordered) {
    const h = hash(member.id);
    if (taken.size >= PALETTE.length) {
      colors.set(member.id, `hsl(${(h * 137.508) % 360} 65% 62%)`);
      continue;
    }
    let slot = h % PALETTE.length;
    while (taken.has(slot)) slot = (slot + 1) % PALETTE.length;
    taken.add(slot);
    colors.set(member.id, PALETTE[slot]!);
  }
  return colors;
}
