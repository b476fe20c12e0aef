import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { KeyFilter } from '../../worker/storage/key-filter.ts';

const key = (s: string): Uint8Array => new TextEncoder().encode(s);

describe('the key filter', () => {
  it('never answers absent for a key that was added', () => {
    const filter = new KeyFilter();
    for (let i = 0; i < 20_000; i++) filter.add(key(`k${i}`));
    for (let i = 0; i < 20_000; i++) assert.equal(filter.mayHave(key(`k${i}`)), true);
  });

  it('answers absent for nearly every key never added', () => {
    const filter = new KeyFilter();
    for (let i = 0; i < 20_000; i++) filter.add(key(`k${i}`));
    let maybe = 0;
    for (let i = 0; i < 20_000; i++) if (filter.mayHave(key(`other${i}`))) maybe++;
    assert.ok(maybe < 20, `${maybe} false positives of 20000`);
  });

  it('answers absent for every key of an empty filter, the empty key included', () => {
    const filter = new KeyFilter();
    assert.equal(filter.mayHave(new Uint8Array(0)), false);
    assert.equal(filter.mayHave(key('a')), false);
  });
});
