/**
 * The node's transport in a tab: one link per peer, either a data channel transferred into the worker (frames go
 * straight from worker to worker) or a `MessagePort` whose other end the main thread relays to a data channel.
 * Messages become frames that fit a data-channel message (see frames.ts). Each frame costs a `send` or `postMessage`
 * whatever its size, so the first small message for a peer in a task goes at once (one alone waits for nothing), and
 * the ones after it in that task are held until the task ends and then go out bundled, as few frames as fit, in
 * order; a large one goes at once in chunks, after what was held for its peer.
 * Sending is best effort: frames for a peer without a link, or past a full buffer, are dropped and counted; the
 * node's timeouts notice. With {@link Faults}, every whole message in or out passes its isolation, loss and delay
 * first: outgoing ones before they are bundled, incoming ones after they are unbundled.
 */
import type { Logger, Transport } from '../env.ts';
import type { Faults } from './faults.ts';
import { type AfterTask, afterTaskScheduler } from '../after-task.ts';
import { CHUNK_PAYLOAD_BYTES, Reassembler, packFrames, toFrames } from '../wire/frames.ts';

/** The two kinds of link. */
export type LinkKind = 'channel' | 'relay';

/** What a link reports about itself. */
export interface LinkState {
  readonly peer: string;
  readonly kind: LinkKind;
  readonly open: boolean;
}

/** Options of {@link Links}. */
export interface LinksOptions {
  /** A whole message arrived from `from`. */
  readonly onMessage: (from: string, message: Uint8Array) => void;
  /** A frame from `from` could not be joined into a message. */
  readonly onInvalid: (from: string, reason: string) => void;
  /** A chunk of a message from `from` arrived and more are to come (a large message is on its way). */
  readonly onProgress?: (from: string) => void;
  /** Largest message accepted. */
  readonly maxMessageBytes: number;
  readonly logger: Logger;
  /** Frames held for a link that is not open yet; older ones are dropped past it. @default 1024 */
  readonly maxQueuedFrames?: number;
  /** Past this many bytes waiting in a channel's buffer, frames are dropped. @default 8 MiB */
  readonly maxBufferedBytes?: number;
  /** Injected faults every message passes; without them nothing is dropped or held on purpose. */
  readonly faults?: Faults;
  /** Schedules the flush of held messages after the current task. @default a message to a private MessageChannel */
  readonly afterTask?: AfterTask;
}

interface Link {
  readonly kind: LinkKind;
  readonly send: (frame: Uint8Array) => void;
  readonly isOpen: () => boolean;
  readonly buffered: () => number;
  readonly close: () => void;
  readonly queue: Uint8Array[];
}

/** Per-peer links and the transport over them. */
export class Links implements Transport {
  readonly #options: LinksOptions;
  readonly #links = new Map<string, Link>();
  /** Small messages sent in this task, per peer, in order, to be bundled after it. */
  readonly #held = new Map<string, Uint8Array[]>();
  readonly #afterTask: AfterTask;
  #flushScheduled = false;
  /** Peers a message went to at once in this task: the next ones for them in this task are held. */
  readonly #sentInTask = new Set<string>();
  #nextMessageId = 1;
  /** Frames dropped: no link, queue full, or buffer full (a message for a peer without a link counts as one). */
  dropped = 0;

  constructor(options: LinksOptions) {
    this.#options = options;
    this.#afterTask = options.afterTask ?? afterTaskScheduler();
  }

  /** Uses a data channel transferred into this worker as the link to `peer`, replacing any earlier link. */
  attachChannel(peer: string, channel: RTCDataChannel): void {
    channel.binaryType = 'arraybuffer';
    const reassembler = new Reassembler(this.#options.maxMessageBytes);
    const link: Link = {
      kind: 'channel',
      send: (frame) => channel.send(frame as Uint8Array<ArrayBuffer>),
      isOpen: () => channel.readyState === 'open',
      buffered: () => channel.bufferedAmount,
      close: () => channel.close(),
      queue: [],
    };
    channel.onopen = () => this.#flush(peer, link);
    channel.onmessage = (event: MessageEvent) => this.#receive(peer, link, reassembler, event.data);
    channel.onclose = () => this.#forget(peer, link);
    this.#replace(peer, link);
    if (link.isOpen()) this.#flush(peer, link);
  }

  /** Uses a port relayed by the main thread to a data channel as the link to `peer`, replacing any earlier link. */
  attachPort(peer: string, port: MessagePort): void {
    const reassembler = new Reassembler(this.#options.maxMessageBytes);
    const link: Link = {
      kind: 'relay',
      send: (frame) => port.postMessage(frame.buffer, [frame.buffer]),
      isOpen: () => true,
      buffered: () => 0,
      close: () => port.close(),
      queue: [],
    };
    port.onmessage = (event: MessageEvent) => this.#receive(peer, link, reassembler, event.data);
    port.start();
    this.#replace(peer, link);
  }

  /** Closes and forgets the link to `peer`; messages held for it are discarded. */
  detach(peer: string): void {
    this.#held.delete(peer);
    const link = this.#links.get(peer);
    if (link === undefined) return;
    this.#links.delete(peer);
    link.close();
  }

  /**
   * Sends one message to `to`: a small one after this task, bundled with the others sent to `to` in it, a large one
   * now, in chunks, after those. The bytes of a small message are read when it goes: keep them unchanged until then.
   */
  send(to: string, message: Uint8Array): void {
    const large = message.byteLength > CHUNK_PAYLOAD_BYTES;
    const faults = this.#options.faults;
    if (faults !== undefined) {
      // Framed or copied now: a delayed send must not keep a buffer the caller may reuse.
      if (large) {
        const frames = toFrames(message, this.#nextMessageId++);
        faults.outgoing(to, () => this.#sendChunks(to, frames));
      } else {
        const copy = message.slice();
        faults.outgoing(to, () => this.#hold(to, copy));
      }
      return;
    }
    if (large) this.#sendChunks(to, toFrames(message, this.#nextMessageId++));
    else this.#hold(to, message);
  }

  /** Every link and whether it is open. */
  states(): LinkState[] {
    return [...this.#links].map(([peer, link]) => ({ peer, kind: link.kind, open: link.isOpen() }));
  }

  /** Sends what is held, then closes every link. */
  close(): void {
    this.#flushAll();
    for (const peer of [...this.#links.keys()]) this.detach(peer);
  }

  /**
   * Sends a small message for `to` at once when it is the first for `to` in this task (a message alone waits for
   * nothing), else holds it until the end of the task, to go with the others in one frame.
   */
  #hold(to: string, message: Uint8Array): void {
    if (!this.#links.has(to)) {
      this.dropped++;
      return;
    }
    if (!this.#flushScheduled) {
      this.#flushScheduled = true;
      this.#afterTask(() => this.#flushAll());
    }
    if (!this.#sentInTask.has(to)) {
      this.#sentInTask.add(to);
      this.#deliver(to, toFrames(message, this.#nextMessageId++));
      return;
    }
    const held = this.#held.get(to);
    if (held === undefined) this.#held.set(to, [message]);
    else held.push(message);
  }

  /** Sends the chunks of a large message, after what is held for `to`, which must not overtake them. */
  #sendChunks(to: string, frames: Uint8Array[]): void {
    this.#flushPeer(to);
    this.#deliver(to, frames);
  }

  #flushAll(): void {
    this.#flushScheduled = false;
    this.#sentInTask.clear();
    for (const peer of [...this.#held.keys()]) this.#flushPeer(peer);
  }

  /** Sends the messages held for `peer`, bundled; each frame stands alone, so each is let through or dropped alone. */
  #flushPeer(peer: string): void {
    const held = this.#held.get(peer);
    if (held === undefined) return;
    this.#held.delete(peer);
    for (const frame of packFrames(held)) this.#deliver(peer, [frame]);
  }

  /** Sends frames to the link `to` has now. */
  #deliver(to: string, frames: Uint8Array[]): void {
    const link = this.#links.get(to);
    if (link === undefined) {
      this.dropped += frames.length;
      return;
    }
    this.#toLink(to, link, frames);
  }

  #toLink(to: string, link: Link, frames: Uint8Array[]): void {
    if (!link.isOpen()) {
      const max = this.#options.maxQueuedFrames ?? 1024;
      link.queue.push(...frames);
      if (link.queue.length > max) this.dropped += link.queue.splice(0, link.queue.length - max).length;
      return;
    }
    this.#write(to, link, frames);
  }

  #write(peer: string, link: Link, frames: Uint8Array[]): void {
    if (link.buffered() > (this.#options.maxBufferedBytes ?? 8 * 1024 * 1024)) {
      this.dropped += frames.length;
      return;
    }
    try {
      for (const frame of frames) link.send(frame);
    } catch (error) {
      this.dropped += frames.length;
      this.#options.logger.warn({ peer, error: String(error) }, 'send failed');
    }
  }

  #flush(peer: string, link: Link): void {
    if (this.#links.get(peer) !== link || link.queue.length === 0) return;
    this.#write(peer, link, link.queue.splice(0));
  }

  #receive(peer: string, link: Link, reassembler: Reassembler, data: unknown): void {
    if (this.#links.get(peer) !== link) return;
    if (!(data instanceof ArrayBuffer)) {
      this.#options.onInvalid(peer, 'a frame that is not binary');
      return;
    }
    const outcome = reassembler.push(new Uint8Array(data));
    if (outcome.kind === 'messages') {
      const faults = this.#options.faults;
      for (const message of outcome.messages) {
        // Faults judge whole messages, after reassembly and unbundling, so that a dropped one leaves the reassembler
        // in step and takes none of its bundle with it.
        if (faults?.admits(peer) === false) continue;
        this.#options.onMessage(peer, message);
        // A message that led to this link's replacement or detachment ends the bundle, as for any later frame.
        if (this.#links.get(peer) !== link) return;
      }
    } else if (outcome.kind === 'invalid') this.#options.onInvalid(peer, outcome.reason);
    else this.#options.onProgress?.(peer);
  }

  #replace(peer: string, link: Link): void {
    const old = this.#links.get(peer);
    this.#links.set(peer, link);
    if (old !== undefined && old !== link) old.close();
  }

  #forget(peer: string, link: Link): void {
    if (this.#links.get(peer) === link) this.#links.delete(peer);
  }
}
