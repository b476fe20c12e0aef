import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { md5 } from '../../worker/ring/md5.ts';

describe('md5', () => {
  it("equals Node's md5 for inputs of every length from 0 to 399 bytes, across block boundaries", () => {
    let seed = 7;
    for (let length = 0; length < 400; length++) {
      const bytes = new Uint8Array(length);
      for (let i = 0; i < length; i++) bytes[i] = (seed = (Math.imul(seed, 1103515245) + 12345) >>> 0) >>> 24;
      const expected = createHash('md5').update(bytes).digest('hex');
      assert.equal(Buffer.from(md5(bytes)).toString('hex'), expected, `length ${length}`);
    }
  });

  it('gives the RFC 1321 test suite digests', () => {
    const hex = (s: string): string => Buffer.from(md5(new TextEncoder().encode(s))).toString('hex');
    assert.equal(hex(''), 'd41d8cd98f00b204e9800998ecf8427e');
    assert.equal(hex('abc'), '900150983cd24fb0d6963f7d28e17f72');
    assert.equal(hex('message digest'), 'f96b697d7cb7938d525a2f31aaf161d0');
  });
});
