/** The shared-list example's merge of concurrent versions of an item (examples/shared-list/merge.ts). */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { mergeItems } from '../../examples/shared-list/merge.ts';

describe('the shared list’s merge of concurrent versions', () => {
  it('keeps an item done when any version is done, with the latest text and the earliest creation', () => {
    const merged = mergeItems([
      { text: 'milk', done: true, created: 5, edited: 10 },
      { text: 'oat milk', done: false, created: 5, edited: 12 },
    ]);
    assert.deepEqual(merged, { text: 'oat milk', done: true, created: 5, edited: 12 });
  });

  it('picks the same text in every order when two edits carry the same time', () => {
    const a = { text: 'apples', done: false, created: 1, edited: 7 };
    const b = { text: 'pears', done: false, created: 1, edited: 7 };
    assert.deepEqual(mergeItems([a, b]), mergeItems([b, a]));
    assert.equal(mergeItems([a, b])?.text, 'pears');
  });

  it('ignores values that are not items, and gives null when none is', () => {
    assert.equal(mergeItems(['not an item', new Uint8Array([1])]), null);
    assert.equal(mergeItems([]), null);
    assert.deepEqual(mergeItems(['junk', { text: 'tea', done: false, created: 2, edited: 3 }]), {
      text: 'tea',
      done: false,
      created: 2,
      edited: 3,
    });
  });
});
