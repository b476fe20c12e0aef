/**
 * The checker of a simulation run: from the recorded writes and the final state of every key, it finds
 * acknowledged writes that vanished, deleted values that came back, values nobody wrote, replicas that disagree,
 * dots that name two different writes, and refused writes that stored something after all.
 *
 * Every write carries a unique id as its value. A write's parents are the values returned by the read whose context
 * it was put with: those are the versions it was allowed to supersede. Its ancestors are its parents and,
 * transitively, theirs. A write is accounted for at the end when it, or a write having it as an ancestor, is still
 * returned, or when a delete that may have taken effect had it as an ancestor.
 *
 * A put that is retried inside the cluster (a forwarded put whose coordinator timed out) may be stored under two
 * dots, so a value is not one version. Resurrection is therefore judged twice: by value, only for writes that had
 * completed before the delete's read began (a put still in flight may legitimately land again) and only when some
 * stored copy of the value is one the delete may have seen; and by version, where it is exact: a stored version whose
 * dot an acknowledged write's context covers was superseded by that write and must not be there at the end.
 */

/** How a write ended, as its client saw it. */
export type WriteOutcome =
  /** The node acknowledged it. */
  | 'ok'
  /** It failed in a way that writes nothing (a stale conditional put, a bad argument). */
  | 'failed'
  /** It failed after it may have been stored somewhere (quorum not reached, timeout, node closed). */
  | 'unknown';

/** One put or delete of the history. */
export interface WriteRecord {
  /** Unique id; for a put, the text of its value. */
  readonly id: string;
  readonly kind: 'put' | 'delete';
  readonly key: string;
  /** Ids of the values returned by the read whose context the write carried; empty for a blind put. */
  readonly parents: readonly string[];
  /** The write quorum asked for. */
  readonly w: number;
  readonly outcome: WriteOutcome;
  /** Virtual ms when the client issued the read whose context the write carried (or the write, if blind). */
  readonly readAt?: number;
  /** Virtual ms when the client had the write's answer. */
  readonly end?: number;
  /**
   * The clock of the context the write carried (node and counter of each entry): the stored versions whose dots it
   * covers are the ones the write supersedes. Empty for a blind put.
   */
  readonly supersedes?: readonly { readonly node: string; readonly counter: number }[];
  /** For an acknowledged write, the node that coordinated it (the owner of its dot). */
  readonly coordinator?: string;
  /** For an acknowledged write, its dot: the coordinator's entry in the context the write returned. */
  readonly dot?: { readonly node: string; readonly counter: number };
  /** For a failed write, its error code. */
  readonly code?: string;
  /**
   * True for a write that must store nothing whatever its answer (a forged context, a value over the limit): it
   * must never be found stored, and no delete of this kind took effect.
   */
  readonly storesNothing?: boolean;
}

/** One stored version, as the checker needs it. */
export interface StoredVersion {
  readonly node: string;
  readonly counter: number;
  /** The write id the value holds, or null for a tombstone. */
  readonly value: string | null;
}

/** One replica's holding of a key: its siblings, tombstones included. */
export interface ReplicaState {
  readonly node: string;
  readonly versions: readonly StoredVersion[];
}

/** The state of one key after the run has healed and quiesced. */
export interface FinalKey {
  readonly key: string;
  /** Ids of the values a full (R = N) read returned. */
  readonly values: readonly string[];
  /** What each replica of the key's preference list stores. */
  readonly replicas: readonly ReplicaState[];
}

/** An acknowledged write that is gone. */
export interface LostWrite {
  readonly id: string;
  readonly key: string;
  readonly w: number;
  /** What the key holds instead. */
  readonly finalValues: readonly string[];
}

/** A value returned or stored at the end although an acknowledged write had superseded it. */
export interface Resurrection {
  /** The value's write id. */
  readonly id: string;
  readonly key: string;
  /** The acknowledged write that superseded it. */
  readonly supersededBy: string;
  /** `value`: an acknowledged delete had the value as an ancestor; `version` names the stored dot it covered. */
  readonly by: 'value' | `version ${string}`;
}

/** One dot naming two different writes. */
export interface RepeatedDot {
  /** `node:counter`. */
  readonly dot: string;
  /** The writes it names: write ids of the history, or `key=value id` as stored (`∅` for a tombstone). */
  readonly writes: readonly string[];
  /** Where the second one was found. */
  readonly where: string;
}

/** A refused write found stored. */
export interface RefusedStored {
  readonly id: string;
  readonly key: string;
  /** The error the write was answered with, if any. */
  readonly code: string | undefined;
  /** Where its value was found. */
  readonly where: string;
}

/** A key whose replicas disagree. */
export interface Divergence {
  readonly key: string;
  readonly replicas: readonly ReplicaState[];
}

/** The checker's findings. */
export interface Verdict {
  /** Acknowledged puts with W ≥ {@link CheckOptions.minW}: the writes that must survive. */
  readonly acknowledged: number;
  readonly lost: LostWrite[];
  /** The lost writes whose key still holds values: concurrent siblings collapsed by mistake. */
  readonly siblingsLost: LostWrite[];
  readonly resurrected: Resurrection[];
  /** Returned values that no write of the history (of that key) produced. */
  readonly phantoms: { readonly key: string; readonly value: string }[];
  readonly divergent: Divergence[];
  /** True when every key's replicas hold the same sibling set. */
  readonly converged: boolean;
  /** Dots that name two different writes, in the history or in the final replicas. */
  readonly repeatedDots: RepeatedDot[];
  /** Writes that must have stored nothing, found among the final values or replicas. */
  readonly refusedStored: RefusedStored[];
}

/** Options of {@link check}. */
export interface CheckOptions {
  /** Only acknowledged puts with at least this W must survive. @default 2 */
  readonly minW?: number;
  /**
   * Every write refused with a code that stores nothing must have stored nothing, not only those marked
   * `storesNothing`. Only where no call can time out: a put forwarded to a coordinator that stored it and then went
   * silent may be refused by the next one (stale, or at a bound) although it is stored. @default false
   */
  readonly strictRefusals?: boolean;
}

/** Checks a history against the final state of its keys. */
export function check(writes: readonly WriteRecord[], final: readonly FinalKey[], options: CheckOptions = {}): Verdict {
  const minW = options.minW ?? 2;
  const byId = new Map<string, WriteRecord>();
  for (const w of writes) {
    if (byId.has(w.id)) throw new Error(`write id ${w.id} appears twice in the history`);
    byId.set(w.id, w);
  }
  const finalByKey = new Map<string, FinalKey>();
  for (const f of final) finalByKey.set(f.key, f);

  const phantoms: { key: string; value: string }[] = [];
  const returned: string[] = [];
  for (const f of final) {
    for (const value of f.values) {
      const w = byId.get(value);
      if (w === undefined || w.kind !== 'put' || w.key !== f.key) phantoms.push({ key: f.key, value });
      else returned.push(value);
    }
  }

  // Everything the returned values descend from: a write in here was superseded by a write that survived.
  const explained = ancestorsOf(
    returned.map((id) => ({ id, root: id })),
    byId,
  );
  // Everything a delete that may have taken effect descends from.
  const deletes = writes.filter((w) => w.kind === 'delete' && w.outcome !== 'failed' && w.storesNothing !== true);
  const deleted = ancestorsOf(
    deletes.flatMap((d) => d.parents.map((id) => ({ id, root: d.id }))),
    byId,
  );

  const lost: LostWrite[] = [];
  let acknowledged = 0;
  for (const w of writes) {
    if (w.kind !== 'put' || w.outcome !== 'ok' || w.w < minW) continue;
    acknowledged++;
    if (explained.has(w.id) || deleted.has(w.id)) continue;
    lost.push({ id: w.id, key: w.key, w: w.w, finalValues: finalByKey.get(w.key)?.values ?? [] });
  }
  const siblingsLost = lost.filter((l) => l.finalValues.length > 0);

  const resurrected: Resurrection[] = [];
  const acknowledgedDeletes = ancestorsOf(
    deletes.filter((d) => d.outcome === 'ok').flatMap((d) => d.parents.map((id) => ({ id, root: d.id }))),
    byId,
  );
  for (const id of new Set(returned)) {
    const deletedBy = acknowledgedDeletes.get(id);
    if (deletedBy === undefined) continue;
    const write = byId.get(id)!;
    const deletion = byId.get(deletedBy)!;
    // A put still in flight when the delete read may be stored again, under a dot the delete never saw.
    if (write.end !== undefined && deletion.readAt !== undefined && write.end >= deletion.readAt) continue;
    // So may a put retried inside the cluster before it was acknowledged: a copy the delete never saw survives.
    const copies = storedCopies(finalByKey.get(write.key), id);
    if (copies.length > 0 && copies.every((dot) => unseenBy(deletion, dot))) continue;
    resurrected.push({ id, key: write.key, supersededBy: deletedBy, by: 'value' });
  }
  const byValue = new Set(resurrected.map((r) => r.id));
  resurrected.push(...supersededSurvivors(writes, final).filter((r) => !byValue.has(r.id)));

  const divergent: Divergence[] = [];
  for (const f of final) {
    const [first, ...rest] = f.replicas.map((r) =>
      r.versions
        .map((v) => `${v.node}:${v.counter}`)
        .sort()
        .join(','),
    );
    if (rest.some((s) => s !== first)) divergent.push({ key: f.key, replicas: f.replicas });
  }

  return {
    acknowledged,
    lost,
    siblingsLost,
    resurrected,
    phantoms,
    divergent,
    converged: divergent.length === 0,
    repeatedDots: repeatedDots(writes, final),
    refusedStored: refusedStored(writes, final, options.strictRefusals ?? false),
  };
}

/**
 * Dots naming two different writes: two acknowledged writes of the history returned the same dot; one dot is stored
 * with two different values or under two keys; or a stored dot holds another value than the acknowledged write that
 * returned it. A dot is its coordinator's counter, which it never draws twice, so each of these is a lost write or a
 * mix-up of two. (One write may have two dots: a put retried inside the cluster.)
 */
function repeatedDots(writes: readonly WriteRecord[], final: readonly FinalKey[]): RepeatedDot[] {
  const out: RepeatedDot[] = [];
  const reported = new Set<string>();
  const report = (dot: string, pair: string[], where: string): void => {
    if (reported.has(dot)) return;
    reported.add(dot);
    out.push({ dot, writes: pair, where });
  };
  const acknowledged = new Map<string, WriteRecord>();
  for (const w of writes) {
    if (w.outcome !== 'ok' || w.dot === undefined) continue;
    const dot = `${w.dot.node}:${w.dot.counter}`;
    const other = acknowledged.get(dot);
    if (other === undefined) acknowledged.set(dot, w);
    else report(dot, [other.id, w.id], 'the history: two acknowledged writes returned it');
  }
  const stored = new Map<string, string>();
  for (const f of final) {
    for (const r of f.replicas) {
      for (const v of r.versions) {
        const dot = `${v.node}:${v.counter}`;
        const what = `${f.key}=${v.value ?? '∅'}`;
        const seen = stored.get(dot);
        if (seen === undefined) stored.set(dot, what);
        else if (seen !== what) report(dot, [seen, what], `the final replicas (${r.node})`);
        const write = acknowledged.get(dot);
        if (write === undefined) continue;
        const expected = `${write.key}=${write.kind === 'put' ? write.id : '∅'}`;
        if (expected !== what) report(dot, [write.id, what], `the final replicas (${r.node}) against the history`);
      }
    }
  }
  return out;
}

/** Writes refused (or bound to be) that are nonetheless among the final values or stored by a final replica. */
function refusedStored(writes: readonly WriteRecord[], final: readonly FinalKey[], strict: boolean): RefusedStored[] {
  const finalByKey = new Map(final.map((f) => [f.key, f]));
  const out: RefusedStored[] = [];
  for (const w of writes) {
    if (w.kind !== 'put' || !(w.storesNothing === true || (strict && w.outcome === 'failed'))) continue;
    const f = finalByKey.get(w.key);
    if (f === undefined) continue;
    const where = f.values.includes(w.id)
      ? 'the final values'
      : f.replicas.find((r) => r.versions.some((v) => v.value === w.id))?.node;
    if (where !== undefined) out.push({ id: w.id, key: w.key, code: w.code, where });
  }
  return out;
}

/** The dots under which the final replicas of a key store value `id`. */
function storedCopies(final: FinalKey | undefined, id: string): StoredVersion[] {
  const out = new Map<string, StoredVersion>();
  for (const r of final?.replicas ?? []) {
    for (const v of r.versions) if (v.value === id) out.set(`${v.node}:${v.counter}`, v);
  }
  return [...out.values()];
}

/** True when a write's context did not cover `dot`: the write never saw that version. */
function unseenBy(write: WriteRecord, dot: StoredVersion): boolean {
  if (write.supersedes === undefined) return false;
  const entry = write.supersedes.find((e) => e.node === dot.node);
  return entry === undefined || entry.counter < dot.counter;
}

/** Stored versions that an acknowledged write of their key superseded. */
function supersededSurvivors(writes: readonly WriteRecord[], final: readonly FinalKey[]): Resurrection[] {
  const stored = new Map<string, { dots: string[]; versions: StoredVersion[] }>();
  for (const f of final) {
    const versions = new Map<string, StoredVersion>();
    for (const r of f.replicas) for (const v of r.versions) versions.set(`${v.node}:${v.counter}`, v);
    stored.set(f.key, { dots: [...versions.keys()], versions: [...versions.values()] });
  }
  const out: Resurrection[] = [];
  const reported = new Set<string>();
  // Plain loops: every acknowledged write is matched against its key's stored versions, once, in code run once.
  for (let i = 0; i < writes.length; i++) {
    const w = writes[i]!;
    if (w.outcome !== 'ok' || w.supersedes === undefined) continue;
    const key = stored.get(w.key);
    if (key === undefined) continue;
    for (let j = 0; j < key.versions.length; j++) {
      const v = key.versions[j]!;
      const covering = entryOf(w.supersedes, v.node);
      if (covering === undefined || covering.counter < v.counter) continue;
      const dot = key.dots[j]!;
      if (reported.has(dot)) continue;
      reported.add(dot);
      out.push({ id: v.value ?? '(tombstone)', key: w.key, supersededBy: w.id, by: `version ${dot}` });
    }
  }
  return out;
}

/** The first entry of `clock` for `node`, if any. */
function entryOf<E extends { readonly node: string }>(clock: readonly E[], node: string): E | undefined {
  for (let i = 0; i < clock.length; i++) if (clock[i]!.node === node) return clock[i];
  return undefined;
}

/**
 * Every id in `roots` and every ancestor of theirs, by parent links, each mapped to the root it was first reached
 * from (one search for all roots, so that long read-modify-write chains are walked once).
 */
function ancestorsOf(
  roots: readonly { id: string; root: string }[],
  byId: ReadonlyMap<string, WriteRecord>,
): Map<string, string> {
  const seen = new Map<string, string>();
  const stack: string[] = [];
  for (const { id, root } of roots) {
    if (seen.has(id)) continue;
    seen.set(id, root);
    stack.push(id);
  }
  while (stack.length > 0) {
    const id = stack.pop()!;
    const root = seen.get(id)!;
    const write = byId.get(id);
    if (write === undefined) continue;
    for (const parent of write.parents) {
      // A read of one key cannot stand for another key's write.
      if (seen.has(parent) || byId.get(parent)?.key !== write.key) continue;
      seen.set(parent, root);
      stack.push(parent);
    }
  }
  return seen;
}
