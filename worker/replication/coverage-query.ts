/**
 * A coverage query (`keys`): every partition of the ring is asked of one node that holds it whole — this node when
 * it does, else its owners in preference-list order, then other members known to hold it — with one `keys` message
 * per peer listing every partition asked of it; a node that does not answer within the timeout, refuses a partition
 * (it does not hold it whole: it is still fetching it) or answers one with keys it cannot hold is replaced by the
 * next, for those partitions only. The answers are merged in key order (coverage.ts). When every candidate of some
 * partition failed, the query fails with `ERR_QUORUM`: a listing with a hole is no listing.
 */
import { QuorumError } from '../errors.ts';
import type { Logger } from '../env.ts';
import type { Outgoing, Reply } from '../transport/peers.ts';
import { type KeysAsk, type KeysPage, MAX_KEYS_ASKS } from '../wire/protocol.ts';
import { CoverageMerge, compareKeys, hasPrefix } from './coverage.ts';

/** What a node answers for the asks of one `keys` message. */
export interface KeysAnswer {
  readonly pages: readonly KeysPage[];
  readonly refused: readonly number[];
}

/** What a coverage query needs from its node. */
export interface CoverageDeps {
  readonly self: string;
  /** Ring partitions Q. */
  readonly partitions: number;
  /** The nodes to ask for `partition`, in the order to try them. */
  candidates(partition: number): readonly string[];
  /**
   * Called when every candidate of `partition` failed it: resolves true when they are worth asking once more (this
   * node now holds `partition`, or the owners, still fetching it, had time to finish), false when not. A node of a
   * new cluster marks its partitions held once its probes answer, so a listing made as it starts waits that long (as
   * a put does) before it finds no holder.
   */
  awaitHeld(partition: number): Promise<boolean>;
  partitionOf(key: Uint8Array): number;
  /** This node's own answer, as it would answer a peer. */
  serveLocal(asks: readonly KeysAsk[], prefix: Uint8Array, limit: number): Promise<KeysAnswer>;
  /** Sends a `keys` request; null when it timed out. */
  request(peer: string, message: Outgoing): Promise<Reply | null>;
  readonly logger: Logger;
}

/** One page of a listing. */
export interface CoveragePage {
  readonly keys: readonly Uint8Array[];
  /** False when no key under the prefix follows the page. */
  readonly more: boolean;
  /** Messages sent to peers for the page. */
  readonly messages: number;
}

/** Runs one page of a coverage query; see the module. */
export async function coverageQuery(
  deps: CoverageDeps,
  prefix: Uint8Array,
  after: Uint8Array | null,
  limit: number,
): Promise<CoveragePage> {
  const all = Array.from({ length: deps.partitions }, (_, p) => p);
  const merge = new CoverageMerge(all, after, limit);
  // Per partition, the index in its candidates of the node asked now: it stays while that node answers.
  const attempt = new Map<number, number>();
  const candidates = new Map<number, readonly string[]>();
  let messages = 0;
  // Partitions already waited for once (awaitHeld): a second run out of candidates fails the listing.
  const waited = new Set<number>();
  const giveUp = (partition: number, node: string): void => {
    attempt.set(partition, (attempt.get(partition) ?? 0) + 1);
    deps.logger.debug({ partition, node }, 'keys: moving to the next holder of a partition');
  };
  for (;;) {
    merge.take();
    const needed = merge.needed();
    if (needed.length === 0) break;
    const groups = new Map<string, KeysAsk[]>();
    const exhausted = needed.filter(({ partition }) => {
      let list = candidates.get(partition);
      if (list === undefined) candidates.set(partition, (list = deps.candidates(partition)));
      return list[attempt.get(partition) ?? 0] === undefined;
    });
    if (exhausted.length > 0) {
      const held = await Promise.all(
        exhausted.map(({ partition }) => (waited.has(partition) ? false : deps.awaitHeld(partition))),
      );
      exhausted.forEach(({ partition }, i) => {
        if (!held[i]) {
          throw new QuorumError(
            `no holder of partition ${partition} answered the listing (${candidates.get(partition)!.length} asked); retry later`,
            1,
            0,
          );
        }
        waited.add(partition);
        candidates.set(partition, deps.candidates(partition));
        attempt.delete(partition);
      });
    }
    for (const { partition, after: from } of needed) {
      const node = candidates.get(partition)![attempt.get(partition) ?? 0]!;
      let asks = groups.get(node);
      if (asks === undefined) groups.set(node, (asks = []));
      asks.push({ partition, after: from });
    }
    const rounds: Promise<void>[] = [];
    for (const [node, asks] of groups) {
      for (let i = 0; i < asks.length; i += MAX_KEYS_ASKS) {
        const chunk = asks.slice(i, i + MAX_KEYS_ASKS);
        if (node !== deps.self) messages++;
        rounds.push(ask(deps, node, chunk, prefix, limit, merge, giveUp));
      }
    }
    await Promise.all(rounds);
  }
  return { keys: merge.page, more: merge.more, messages };
}

/** Asks `node` for `asks` and feeds its answer to `merge`; each ask it fails is handed to `giveUp`. */
async function ask(
  deps: CoverageDeps,
  node: string,
  asks: readonly KeysAsk[],
  prefix: Uint8Array,
  limit: number,
  merge: CoverageMerge,
  giveUp: (partition: number, node: string) => void,
): Promise<void> {
  let answer: KeysAnswer | null;
  if (node === deps.self) {
    answer = await deps.serveLocal(asks, prefix, limit);
  } else {
    const reply = await deps.request(node, { type: 'keys', asks, prefix, limit });
    answer = reply?.type === 'keys-reply' ? reply : null;
    if (reply?.type === 'error') deps.logger.debug({ node, code: reply.code }, 'keys: a holder answered an error');
  }
  const asked = new Map(asks.map((a) => [a.partition, a]));
  const settled = new Set<number>();
  for (const page of answer?.pages ?? []) {
    const a = asked.get(page.partition);
    if (a === undefined || settled.has(page.partition)) continue;
    settled.add(page.partition);
    const fits = page.keys.every(
      (key) =>
        hasPrefix(key, prefix) &&
        deps.partitionOf(key) === page.partition &&
        (a.after === null || compareKeys(a.after, key) < 0),
    );
    if (!fits || page.keys.length > limit || !merge.add(page.partition, page)) {
      deps.logger.warn({ node, partition: page.partition }, 'keys: a holder answered keys it cannot hold');
      giveUp(page.partition, node);
    }
  }
  for (const partition of answer?.refused ?? []) {
    if (asked.has(partition) && !settled.has(partition)) {
      settled.add(partition);
      giveUp(partition, node);
    }
  }
  // No answer, or one that settled none of its asks (a node must answer one at least): the node failed them all.
  // Asks left out of an answer that settled some did not fit its reply, and go to the same node again.
  if (settled.size === 0) for (const a of asks) giveUp(a.partition, node);
}
