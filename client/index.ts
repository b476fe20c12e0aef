/**
 * dynamesh: a Dynamo-style replicated key-value store whose nodes are browser tabs. `openStore()` starts this tab's
 * node and joins a cluster; the returned {@link Store} answers `get`, `put` and `delete` with version contexts.
 */
export {
  openStore,
  type OpenStoreOptions,
  type Store,
  type StoreEvents,
  type StoreGetOptions,
  type StorePutOptions,
  type StoreDeleteOptions,
  type StoreGetResult,
  type StoreKeysOptions,
  type StoreKeysResult,
  type StorePutResult,
  type StoreConfig,
  type StoreFaults,
  type StoreWatchTarget,
  type StoreWatchNotice,
  MAX_STORE_WATCHES,
} from './store.ts';
export type { FaultState } from '../worker/transport/faults.ts';
export type { PartitionInfo, PartitionState } from '../worker/membership/ownership.ts';
export { type Value, type ReadValue, UndecodableValue, isUndecodable } from './values.ts';
export type { DataPlane, PeerState } from './mesh.ts';
export type { ReadReceipt } from '../worker/node.ts';
export type { WireReceipt as Receipt } from '../worker/wire/protocol.ts';
export type { HostMetrics, LogEntry } from '../worker/main.ts';
export type { ClusterView, ViewMember, MemberState } from '../signaling/events.ts';
export {
  DynameshError,
  QuorumError,
  TimeoutError,
  StaleContextError,
  InvalidArgumentError,
  TooLargeError,
  TooManySiblingsError,
  TooManyWatchesError,
  ClosedError,
  UnauthorizedError,
  StorageError,
  hasErrorCode,
  ERROR_CODES,
  type ErrorCode,
} from '../worker/errors.ts';
