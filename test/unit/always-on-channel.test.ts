import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import wrtc from '@roamhq/wrtc';
import { REREAD_BYTES, cachedChannel } from '../../always-on/channel.ts';

/** Two real wrtc peer connections on this machine, joined by one negotiated data channel. */
async function connectedPair(): Promise<{
  a: RTCPeerConnection;
  b: RTCPeerConnection;
  ours: RTCDataChannel;
  theirs: RTCDataChannel;
}> {
  const a = new wrtc.RTCPeerConnection({ iceServers: [] }) as unknown as RTCPeerConnection;
  const b = new wrtc.RTCPeerConnection({ iceServers: [] }) as unknown as RTCPeerConnection;
  a.onicecandidate = (event) => void (event.candidate && b.addIceCandidate(event.candidate));
  b.onicecandidate = (event) => void (event.candidate && a.addIceCandidate(event.candidate));
  const ours = a.createDataChannel('dynamesh', { negotiated: true, id: 512 });
  const theirs = b.createDataChannel('dynamesh', { negotiated: true, id: 512 });
  await a.setLocalDescription(await a.createOffer());
  await b.setRemoteDescription(a.localDescription!);
  await b.setLocalDescription(await b.createAnswer());
  await a.setRemoteDescription(b.localDescription!);
  return { a, b, ours, theirs };
}

describe('a wrtc data channel with its state followed from events', () => {
  let pair: Awaited<ReturnType<typeof connectedPair>>;
  before(async () => {
    pair = await connectedPair();
  });
  after(() => {
    pair.a.close();
    pair.b.close();
  });

  it('turns open with its open event, and carries messages both ways', async () => {
    const channel = cachedChannel(pair.ours);
    channel.binaryType = 'arraybuffer';
    if (channel.readyState !== 'open') await new Promise((resolve) => (channel.onopen = resolve));
    assert.equal(channel.readyState, 'open');
    const received = new Promise<ArrayBuffer>((resolve) => {
      channel.onmessage = (event: MessageEvent<ArrayBuffer>) => resolve(event.data);
    });
    const echoed = new Promise<void>((resolve) => {
      pair.theirs.binaryType = 'arraybuffer';
      // Echoes one message only: the frames of the tests after this one are not to come back.
      pair.theirs.onmessage = (event: MessageEvent<ArrayBuffer>) => {
        pair.theirs.onmessage = null;
        pair.theirs.send(event.data);
        resolve();
      };
    });
    channel.send(Uint8Array.of(1, 2, 3));
    await echoed;
    assert.deepEqual([...new Uint8Array(await received)], [1, 2, 3]);
  });

  it('never answers less buffered than the channel holds', () => {
    const channel = cachedChannel(pair.ours);
    const frame = new Uint8Array(64 * 1024);
    let sent = 0;
    for (; sent < REREAD_BYTES; sent += frame.byteLength) {
      channel.send(frame);
      assert.ok(channel.bufferedAmount >= pair.ours.bufferedAmount);
    }
    // The estimate counted every byte since the last reading; a reading then takes what has drained off it.
    assert.ok(channel.bufferedAmount <= sent);
  });

  it('turns closed with its close event, and tells the links', async () => {
    const channel = cachedChannel(pair.ours);
    const closed = new Promise<void>((resolve) => (channel.onclose = () => resolve()));
    pair.theirs.close();
    await closed;
    assert.equal(channel.readyState, 'closed');
  });
});
