/**
 * A node's storage as the node uses it: every merge of versions that come from elsewhere (a replicate, a read's
 * repair, hinted handoff, partition sync) names the node it belongs to (`MergeOptions.self`), so that the engine drops
 * versions someone made up under the node's own dots above those it has issued, whichever way they arrive. Without
 * that, the node would take its next real write of such a dot for a copy of the made-up one.
 */
import type { Version } from '../versions/version.ts';
import { ForwardingStorage } from './forwarding.ts';
import type { ApplyEntry, ApplyOptions, ApplyResult, MergeOptions, Storage } from './storage.ts';

/** `inner`, with every merge naming `self` as the node whose storage it is. */
export class OwnDotsStorage extends ForwardingStorage {
  readonly #self: string;

  constructor(inner: Storage, self: string) {
    super(inner);
    this.#self = self;
  }

  override apply(
    key: Uint8Array,
    partition: number,
    versions: readonly Version[],
    options?: ApplyOptions,
  ): Promise<ApplyResult> {
    return this.inner.apply(key, partition, versions, { ...options, self: this.#self });
  }

  override applyMany(
    partition: number,
    entries: readonly ApplyEntry[],
    options?: MergeOptions,
  ): Promise<ApplyResult[]> {
    return this.inner.applyMany(partition, entries, { ...options, self: this.#self });
  }
}
