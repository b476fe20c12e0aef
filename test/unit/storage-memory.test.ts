import { describe, it } from 'node:test';
import { MemoryStorage } from '../../worker/storage/memory.ts';
import { storageContract } from '../storage-contract.ts';

let last: MemoryStorage | undefined;

storageContract(
  'memory',
  {
    async open() {
      last = new MemoryStorage();
      return last;
    },
    async reopen() {
      if (last === undefined) throw new Error('nothing was opened');
      return last.reopen();
    },
  },
  { describe, it },
);
