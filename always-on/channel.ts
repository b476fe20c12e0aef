/**
 * A `@roamhq/wrtc` data channel as the node's links use it (worker/transport/links.ts), without the cost of asking
 * the native channel its state at every frame. wrtc answers `readyState` and `bufferedAmount` by a synchronous call
 * into its signalling thread (measured here: about 9 µs and 28 µs each when idle, far more under load, against 56 µs
 * for a `send`), and the links ask both before every frame they write: a burst of replies spent most of its
 * transport time there, in stalls of the node's one thread long enough for peers to time out. So the state is
 * followed from the channel's events, and the buffered amount is estimated from the bytes sent since it was last
 * read, read again only once that estimate has grown by {@link REREAD_BYTES}: an over-estimate, never an
 * under-estimate, of what the links compare with their limit.
 */

/** Bytes sent past the last reading of `bufferedAmount` after which it is read again. */
export const REREAD_BYTES = 256 * 1024;

/** What the links use of a data channel. */
export type LinkChannel = Pick<
  RTCDataChannel,
  'binaryType' | 'readyState' | 'bufferedAmount' | 'send' | 'close' | 'onopen' | 'onmessage' | 'onclose'
>;

/** Wraps `channel` so that its state and buffered amount cost no native call per frame (see the module comment). */
export function cachedChannel(channel: RTCDataChannel): LinkChannel {
  let state: RTCDataChannelState = channel.readyState;
  let measured = channel.bufferedAmount;
  let sentSince = 0;
  let onopen: LinkChannel['onopen'] = null;
  let onmessage: LinkChannel['onmessage'] = null;
  let onclose: LinkChannel['onclose'] = null;
  channel.addEventListener('open', (event) => {
    state = 'open';
    onopen?.call(channel, event);
  });
  channel.addEventListener('message', (event) => onmessage?.call(channel, event));
  channel.addEventListener('close', (event) => {
    state = 'closed';
    onclose?.call(channel, event);
  });
  return {
    get binaryType() {
      return channel.binaryType;
    },
    set binaryType(type: BinaryType) {
      channel.binaryType = type;
    },
    get readyState() {
      return state;
    },
    get bufferedAmount() {
      if (sentSince >= REREAD_BYTES) {
        measured = channel.bufferedAmount;
        sentSince = 0;
      }
      return measured + sentSince;
    },
    send(data: ArrayBufferView<ArrayBuffer> & Uint8Array<ArrayBuffer>) {
      channel.send(data);
      sentSince += data.byteLength;
    },
    close() {
      state = 'closing';
      channel.close();
    },
    get onopen() {
      return onopen;
    },
    set onopen(handler) {
      onopen = handler;
    },
    get onmessage() {
      return onmessage;
    },
    set onmessage(handler) {
      onmessage = handler;
    },
    get onclose() {
      return onclose;
    },
    set onclose(handler) {
      onclose = handler;
    },
  } as LinkChannel;
}
