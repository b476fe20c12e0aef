/**
 * Keeps a named meta record of a node's bookkeeping stored as it changes: one write at a time, and changes made while
 * a write runs are stored by the next one, which takes the state as it is then. So a burst of changes costs two
 * writes, and the record stored last is always the newest.
 */
import type { Storage } from './storage.ts';

/** What a {@link MetaSaver} needs. */
export interface MetaSaverDeps {
  readonly storage: Pick<Storage, 'putMeta'>;
  /** The record's name (see `Storage.putMeta`). */
  readonly name: string;
  /** The record as it should be stored now. */
  build(): unknown;
  /** True once the node closed: nothing more is stored. */
  closed(): boolean;
  /** A write that failed; the next change tries again. */
  onError(error: unknown): void;
}

/** Stores one meta record after each change, coalescing changes made meanwhile. */
export class MetaSaver {
  readonly #deps: MetaSaverDeps;
  #saving = false;
  #changed = false;

  constructor(deps: MetaSaverDeps) {
    this.#deps = deps;
  }

  /** Notes a change: the record is stored now, or after the write in progress. */
  save(): void {
    this.#changed = true;
    if (this.#saving) return;
    this.#saving = true;
    void (async () => {
      const deps = this.#deps;
      while (this.#changed && !deps.closed()) {
        this.#changed = false;
        await deps.storage.putMeta(deps.name, deps.build()).catch((error: unknown) => deps.onError(error));
      }
      this.#saving = false;
    })();
  }
}
