// Three nodes in one process, wired by an in-memory transport: the README's example.
import { DynamoNode, MemoryStorage, systemClock, systemTimers, type Transport } from '../worker/index.ts';

const nodes = new Map<string, DynamoNode>();
const link = (from: string): Transport => ({
  send: (to, frame) => setTimeout(() => nodes.get(to)?.receive(from, frame)),
});
const members = ['a', 'b', 'c'].map((id) => ({ id, domain: `profile-${id}` }));
for (const { id, domain } of members) {
  const node = new DynamoNode({
    id,
    domain,
    storage: new MemoryStorage(),
    transport: link(id),
    clock: systemClock,
    timers: systemTimers,
  });
  nodes.set(id, node);
}
for (const node of nodes.values()) node.setMembers(members);

const a = nodes.get('a')!;
const b = nodes.get('b')!;
await a.put('greeting', new TextEncoder().encode('hello'));
const read = await b.get('greeting');
console.log(read.values.map((v) => new TextDecoder().decode(v))); // [ 'hello' ]
const written = await b.put('greeting', new TextEncoder().encode('hello, world'), { context: read.context });
console.log(written.receipt.acknowledged.length >= 2); // true: W=2 replicas hold it

await Promise.all([...nodes.values()].map((node) => node.close()));
