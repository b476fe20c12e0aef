/**
 * The links' batching: the first small message for a peer in a task leaves at once, the ones after it in that task
 * leave together, in one frame, after the task; a large one leaves at once in chunks, behind what was held for its
 * peer. A fake relay port records the frames, and
 * the end of a task is driven by hand, except where the default MessageChannel hook itself is under test.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { silentLogger } from '../../worker/env.ts';
import type { AfterTask } from '../../worker/after-task.ts';
import { Links } from '../../worker/transport/links.ts';
import { CHUNK_PAYLOAD_BYTES, Reassembler } from '../../worker/wire/frames.ts';

/** A relay port that records what is posted on it. */
function recordingPort(frames: Uint8Array[]): MessagePort {
  return {
    onmessage: null,
    postMessage: (buffer: ArrayBuffer) => frames.push(new Uint8Array(buffer)),
    start: () => {},
    close: () => {},
  } as unknown as MessagePort;
}

interface Rig {
  readonly links: Links;
  /** Frames written, per peer. */
  readonly frames: Map<string, Uint8Array[]>;
  /** Ends the current task: runs what waits for its end. */
  endTask(): void;
}

function rig(peers: readonly string[]): Rig {
  let waiting: (() => void)[] = [];
  const afterTask: AfterTask = (callback) => waiting.push(callback);
  const links = new Links({
    maxMessageBytes: 1 << 20,
    logger: silentLogger,
    onMessage: () => {},
    onInvalid: () => {},
    afterTask,
  });
  const frames = new Map<string, Uint8Array[]>();
  for (const peer of peers) {
    frames.set(peer, []);
    links.attachPort(peer, recordingPort(frames.get(peer)!));
  }
  return {
    links,
    frames,
    endTask: () => {
      const callbacks = waiting;
      waiting = [];
      for (const callback of callbacks) callback();
    },
  };
}

/** The messages carried by `frames`, joined again. */
function unframe(frames: readonly Uint8Array[]): Uint8Array[] {
  const reassembler = new Reassembler(1 << 20);
  const messages: Uint8Array[] = [];
  for (const frame of frames) {
    const outcome = reassembler.push(frame);
    assert.notEqual(outcome.kind, 'invalid');
    if (outcome.kind === 'messages') messages.push(...outcome.messages);
  }
  return messages;
}

const message = (fill: number, length = 10): Uint8Array => new Uint8Array(length).fill(fill);

describe('Links batching', () => {
  it('sends the first message of a task to a peer at once and the rest of the task after it, in one frame', () => {
    const { links, frames, endTask } = rig(['b', 'c']);
    links.send('b', message(1));
    links.send('c', message(2));
    links.send('b', message(3));
    links.send('b', message(4));
    links.send('b', message(5));
    assert.equal(frames.get('b')!.length, 1, 'the first goes at once, the others wait for the end of the task');
    assert.equal(frames.get('c')!.length, 1);
    endTask();
    assert.equal(frames.get('b')!.length, 2);
    assert.deepEqual(
      unframe(frames.get('b')!),
      [1, 3, 4, 5].map((i) => message(i)),
    );
    assert.deepEqual(unframe(frames.get('c')!), [message(2)]);
  });

  it('sends the first message of the next task at once again', () => {
    const { links, frames, endTask } = rig(['b']);
    links.send('b', message(1));
    endTask();
    links.send('b', message(2));
    assert.equal(frames.get('b')!.length, 2);
    assert.deepEqual(unframe(frames.get('b')!), [message(1), message(2)]);
  });

  it('with the default hook, gathers the sends after the first from the microtasks of one task into one frame', async () => {
    const channel = new MessageChannel();
    const frames: Uint8Array[] = [];
    const links = new Links({
      maxMessageBytes: 1 << 20,
      logger: silentLogger,
      onMessage: () => {},
      onInvalid: () => {},
    });
    links.attachPort('b', channel.port1);
    channel.port2.onmessage = (event: MessageEvent) => frames.push(new Uint8Array(event.data as ArrayBuffer));
    try {
      await new Promise<void>((resolve) =>
        setTimeout(() => {
          let chain = Promise.resolve();
          for (let i = 0; i < 5; i++) chain = chain.then(() => links.send('b', message(i)));
          void chain.then(resolve);
        }),
      );
      await new Promise((resolve) => setTimeout(resolve, 20));
      assert.equal(frames.length, 2);
      assert.deepEqual(
        unframe(frames),
        [0, 1, 2, 3, 4].map((i) => message(i)),
      );
    } finally {
      links.close();
      channel.port2.close();
    }
  });

  it('keeps per-peer order around a large message: what was held goes first, what follows after its chunks', () => {
    const { links, frames, endTask } = rig(['b']);
    const large = message(9, 2 * CHUNK_PAYLOAD_BYTES + 5);
    links.send('b', message(0));
    links.send('b', message(1));
    links.send('b', message(2));
    links.send('b', large);
    links.send('b', message(3));
    assert.deepEqual(
      frames.get('b')!.map((frame) => frame[0]),
      [0x00, 0x02, 0x01, 0x01, 0x01],
      'the first at once, the held bundle, then the chunks, at once',
    );
    endTask();
    assert.deepEqual(unframe(frames.get('b')!), [message(0), message(1), message(2), large, message(3)]);
  });

  it('discards the messages held for a detached peer and sends those held for others on close', () => {
    const { links, frames, endTask } = rig(['b', 'c']);
    links.send('b', message(0));
    links.send('c', message(1));
    links.send('b', message(2));
    links.send('c', message(3));
    links.detach('b');
    links.close();
    endTask();
    assert.deepEqual(unframe(frames.get('b')!), [message(0)], 'only what went at once');
    assert.deepEqual(unframe(frames.get('c')!), [message(1), message(3)]);
  });
});

describe('Links through the signalling relay', () => {
  /** Links with a server relay that records what it is handed, per peer, and the peers reported unlinked. */
  function relayRig(maxFrameBytes = 1024) {
    let waiting: (() => void)[] = [];
    const relayed = new Map<string, Uint8Array[]>();
    const received: [string, Uint8Array][] = [];
    const unlinked: string[] = [];
    const links = new Links({
      maxMessageBytes: 1 << 20,
      logger: silentLogger,
      onMessage: (from, m) => received.push([from, m]),
      onInvalid: () => {},
      onUnlinked: (peer) => unlinked.push(peer),
      afterTask: (callback) => waiting.push(callback),
    });
    links.useServerRelay({
      maxFrameBytes,
      send: (to, frame) => {
        if (!relayed.has(to)) relayed.set(to, []);
        relayed.get(to)!.push(frame);
      },
    });
    const endTask = (): void => {
      const callbacks = waiting;
      waiting = [];
      for (const callback of callbacks) callback();
    };
    return { links, relayed, received, unlinked, endTask };
  }

  it('sends messages for a peer without a link through the relay, in frames within its limit, in order', () => {
    const { links, relayed, unlinked, endTask } = relayRig(1024);
    const sent = [message(1), message(2, 3000), message(3), message(4, 600), message(5, 600)];
    for (const m of sent) links.send('b', m);
    endTask();
    const frames = relayed.get('b')!;
    for (const frame of frames) assert.ok(frame.byteLength <= 1024, `a frame of ${frame.byteLength} bytes`);
    assert.deepEqual(unframe(frames), sent);
    assert.equal(links.relayedFrames.sent, frames.length);
    assert.ok(unlinked.includes('b'));
  });

  it('sends on the link once the link to the peer is open, and nothing through the relay', () => {
    const { links, relayed, endTask } = relayRig();
    const frames: Uint8Array[] = [];
    links.attachPort('b', recordingPort(frames));
    links.send('b', message(1, 5000));
    endTask();
    assert.equal(relayed.size, 0);
    assert.deepEqual(unframe(frames), [message(1, 5000)]);
  });

  it('hands on a message relayed by a peer as that peer’s, joined from its chunks', () => {
    const sender = relayRig(1024);
    const receiver = relayRig();
    const big = message(7, 5000);
    sender.links.send('r', big);
    sender.links.send('r', message(8));
    sender.endTask();
    for (const frame of sender.relayed.get('r')!) receiver.links.receiveRelayed('s', frame.slice().buffer);
    assert.deepEqual(receiver.received, [
      ['s', big],
      ['s', message(8)],
    ]);
    assert.equal(receiver.links.relayedFrames.received, sender.relayed.get('r')!.length);
  });

  it('drops messages for a peer without a link when there is no relay, and counts them', () => {
    const { links, frames } = rig([]);
    links.send('nobody', message(1));
    assert.equal(frames.size, 0);
    assert.equal(links.dropped, 1);
  });
});
