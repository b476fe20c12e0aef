/**
 * Where members' ring tokens fall, chosen by the server. A node's tokens are md5s of its id (worker/ring/ring.ts), so
 * a node that picks its id, or mints keys until the id derived from one suits it, picks where its tokens land: a few
 * such ids become every owner of a partition they chose, and honest owners then hand them its keys. A server with a
 * secret gives each member a placement, an HMAC of the cluster and the id under a key derived from the secret, and
 * rings mix it into every token: no one without the secret can tell where an id will land before joining with it,
 * and trying ids one join after another runs into the quotas on ids per token and per address. The same secret gives
 * the same placements after a restart, so data does not move; a new secret moves it once, as a changed view would.
 * A server without a secret gives none (placement `''`), and tokens come from the id alone, as before.
 */
import { createHmac } from 'node:crypto';

/** Characters of a placement: 128 bits of the HMAC, base64url. */
const PLACEMENT_LENGTH = 22;

/** What gives each member its placement: a function of the cluster and the node id. */
export type Placement = (cluster: string, nodeId: string) => string;

/** The placements of a server with `secret`; none (`''` for everyone) without one. */
export function placementFor(secret: string | undefined): Placement {
  if (secret === undefined) return () => '';
  // Its own key, so that a placement never reveals a MAC that a token or anything else keyed by the secret uses.
  const key = createHmac('sha256', secret).update('dynamesh ring placement').digest();
  return (cluster, nodeId) =>
    createHmac('sha256', key)
      .update(`${cluster}\u0000${nodeId}`, 'utf8')
      .digest('base64url')
      .slice(0, PLACEMENT_LENGTH);
}
