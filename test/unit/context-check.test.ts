/**
 * A put's context check (worker/replication/context-check.ts) while the key's partition moves: a version the context
 * names may live on only at the partition's former owners, which are asked before the context is refused.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { Metrics } from '../../worker/metrics.ts';
import { ContextCheck, type ContextCheckDeps } from '../../worker/replication/context-check.ts';
import { Ring } from '../../worker/ring/ring.ts';
import { DotHorizon } from '../../worker/versions/horizon.ts';
import { type Version, createVersion } from '../../worker/versions/version.ts';

type Plan = { readonly partition: number; readonly owners: readonly string[] };
const key = new TextEncoder().encode('k');
/** A version of the departed node `gone`, counter 5: what the client read, now held by a former owner alone. */
const moved: Version = createVersion('gone', 5, 1, [], new TextEncoder().encode('v'));

/**
 * A check run by `self`, whose owners answer with nothing, and whose former owners answer with `former`; `self`
 * watched dots from `since` on, and had the members `earlier` in rings of moments ago.
 */
function checker(former: Record<string, readonly Version[] | null>, since = 0, earlier: readonly string[] = []) {
  const deps: ContextCheckDeps<Plan> = {
    self: 'self',
    metrics: new Metrics(),
    horizon: new DotHorizon(since),
    ring: () =>
      new Ring([
        { id: 'self', domain: 'a' },
        { id: 'b', domain: 'b' },
        { id: 'c', domain: 'c' },
      ]),
    readLocal: () => Promise.resolve([]),
    readReplicas: () => Promise.resolve([]),
    readAll: () => Promise.resolve({ siblings: [], owners: 3, complete: true }),
    readAt: (node) => Promise.resolve(former[node] ?? null),
    formerOwners: () => Object.keys(former),
    wasMember: (node) => earlier.includes(node),
  };
  const put = { key, context: [{ node: 'gone', counter: 5, timestamp: 1 }], r: 2, ifMatch: false };
  return new ContextCheck<Plan>(deps).check(put, { partition: 0, owners: ['self', 'b', 'c'] });
}

describe("a put's context naming a version the owners do not hold yet", () => {
  it('is taken when a former owner of the partition still holds the version', async () => {
    assert.deepEqual(await checker({ old: [moved] }), [{ node: 'gone', counter: 5, timestamp: 1 }]);
  });

  it('fails with ERR_QUORUM, not as invalid, when a former owner does not answer', async () => {
    await assert.rejects(checker({ old: null }), { code: 'ERR_QUORUM' });
  });

  it('is refused as invalid when no owner nor former owner holds it', async () => {
    await assert.rejects(checker({ old: [] }), { code: 'ERR_INVALID_ARGUMENT' });
    await assert.rejects(checker({}), { code: 'ERR_INVALID_ARGUMENT' });
  });

  it('fails with ERR_QUORUM, not as invalid, at a node started after the departed node wrote it', async () => {
    // `self` joined at 10, after `gone` wrote at 1 and left: it cannot tell that write from one never issued.
    await assert.rejects(checker({}, 10), { code: 'ERR_QUORUM' });
    await assert.rejects(checker({ old: [] }, 10), { code: 'ERR_QUORUM' });
    assert.deepEqual(await checker({ old: [moved] }, 10), [{ node: 'gone', counter: 5, timestamp: 1 }]);
  });

  it('fails with ERR_QUORUM, not as invalid, when the departed node was a member of a ring of moments ago', async () => {
    // `self` ran before `gone` wrote, but never stored a dot of it (a partition it did not hold, a put that failed):
    // `gone` may have left with the version.
    await assert.rejects(checker({}, 0, ['gone']), { code: 'ERR_QUORUM' });
    await assert.rejects(checker({ old: [] }, 0, ['gone']), { code: 'ERR_QUORUM' });
  });
});
