/**
 * The node core's public surface: one Dynamo node, its storage engines, its environment, and its errors. The
 * browser client (`openStore`) wraps this in a Web Worker.
 */
export {
  DynamoNode,
  type NodeOptions,
  type GetOptions,
  type PutOptions,
  type DeleteOptions,
  type GetResult,
  type PutResult,
  type ReadReceipt,
  type NodeMetrics,
  type WatchNotice,
  type WatchTargetSpec,
} from './node.ts';
export {
  Ring,
  keyPosition,
  type Member,
  type RingOptions,
  DEFAULT_PARTITIONS,
  DEFAULT_TOKENS_PER_NODE,
} from './ring/ring.ts';
export { MemoryStorage } from './storage/memory.ts';
export { openIndexedDbStorage, IndexedDbStorage } from './storage/indexeddb.ts';
export type { Storage, Durability, WriteOptions, Hint, StorageStats } from './storage/storage.ts';
export {
  systemClock,
  systemTimers,
  silentLogger,
  type Clock,
  type Timers,
  type Transport,
  type Logger,
  type Random,
} from './env.ts';
export * from './errors.ts';
export type { WireReceipt as Receipt } from './wire/protocol.ts';
export { DEFAULT_LIMITS, DEFAULT_KEY_BOUNDS, limitsFor, type ProtocolLimits, type KeyBounds } from './wire/protocol.ts';
export { encodeContext, decodeContext } from './wire/context.ts';
export {
  compare,
  descends,
  merge,
  increment,
  prune,
  MAX_COUNTER,
  type VClock,
  type ClockEntry,
  type Ordering,
} from './versions/vclock.ts';
