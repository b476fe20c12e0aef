/**
 * Taking over what a retired node left in its storage: its keys merged into this node's store, where versions
 * resolve as any replica write does (nothing superseded comes back), and its hints added to this node's. What this
 * node does not own it then releases to the owners like any partition it stopped owning (rebalance.ts), and hinted
 * handoff delivers the hints.
 */
import { ClosedError } from '../errors.ts';
import type { ApplyEntry, Storage } from '../storage/storage.ts';

/** Keys read from the retired storage per step. */
const PAGE = 256;

/** What taking over needs from the node. */
export interface TakeOverDeps {
  readonly self: string;
  /** This node's storage. */
  readonly storage: Storage;
  /** The partition of a key under the current ring. */
  partitionOf(key: Uint8Array): number;
  /** Resolves in a pause of foreground requests: taking over yields to them. */
  idle(): Promise<void>;
  /** True once the node closed: taking over stops. */
  closed(): boolean;
}

/**
 * Merges every key and hint of `source` into the node's storage. The source keeps its keys; its hints are removed
 * as they are taken, which is how the listing pages through them. Throws `ERR_CLOSED` when the node closes.
 */
export async function takeOver(source: Storage, deps: TakeOverDeps): Promise<{ keys: number; hints: number }> {
  const check = (): void => {
    if (deps.closed()) throw new ClosedError('the node closed while taking over a retired node');
  };
  let keys = 0;
  for (const stored of await source.partitionsWithData()) {
    let after: Uint8Array | undefined;
    for (;;) {
      const page = await source.scanPartition(stored, after === undefined ? { limit: PAGE } : { after, limit: PAGE });
      if (page.length === 0) break;
      check();
      await deps.idle();
      // Grouped by this node's ring, whose partitions are those of the source's (Q is one for the cluster).
      const byPartition = new Map<number, ApplyEntry[]>();
      for (const k of page) {
        const partition = deps.partitionOf(k.key);
        let entries = byPartition.get(partition);
        if (entries === undefined) byPartition.set(partition, (entries = []));
        entries.push({ key: k.key, versions: k.siblings });
      }
      for (const [partition, entries] of byPartition) await deps.storage.applyMany(partition, entries);
      keys += page.length;
      after = page[page.length - 1]!.key;
    }
  }
  let hints = 0;
  for (let taken = true; taken;) {
    const page = await source.listHints({ limit: PAGE });
    check();
    taken = false;
    for (const hint of page) {
      const partition = deps.partitionOf(hint.key);
      // A hint meant for this node is simply its write; any other waits here for its target, or its owners.
      if (hint.target === deps.self) await deps.storage.apply(hint.key, partition, hint.siblings);
      else await deps.storage.putHint({ ...hint, partition });
      // Nobody else writes the source, so each hint taken goes; were one to stay, the loop would end, not spin.
      if (await source.deleteHint(hint.target, hint.key, hint.siblings)) taken = true;
      hints++;
    }
  }
  return { keys, hints };
}
