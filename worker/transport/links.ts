/**
 * The node's transport in a tab: one link per peer, either a data channel transferred into the worker (frames go
 * straight from worker to worker) or a `MessagePort` whose other end the main thread relays to a data channel.
 * Messages become frames that fit a data-channel message (see frames.ts). Each frame costs a `send` or `postMessage`
 * whatever its size, so the first small message for a peer in a task goes at once (one alone waits for nothing), and
 * the ones after it in that task are held until the task ends and then go out bundled, as few frames as fit, in
 * order; a large one goes at once in chunks, after what was held for its peer.
 * Until the link to a peer is open, or when it has none (the partial mesh links only some peers: link-policy.ts),
 * frames go through the signalling server's relay when the page gave one ({@link Links.useServerRelay}), chunked to
 * the relay's smaller frames; frames relayed from a peer are joined and handed on exactly as those of a link.
 * Sending is best effort: frames for a peer without a link or relay, or past a full buffer, are dropped and counted;
 * the node's timeouts notice. With {@link Faults}, every whole message in or out passes its isolation, loss and delay
 * first: outgoing ones before they are bundled, incoming ones after they are unbundled.
 */
import type { Logger, Transport } from '../env.ts';
import type { Faults } from './faults.ts';
import { type AfterTask, afterTaskScheduler } from '../after-task.ts';
import { CHUNK_PAYLOAD_BYTES, MAX_FRAME_BYTES, Reassembler, packFrames, toFrames } from '../wire/frames.ts';

/** Bytes a chunk frame adds to its part of a message. */
const CHUNK_HEADER_BYTES = MAX_FRAME_BYTES - CHUNK_PAYLOAD_BYTES;

/** The signalling server's relay of frames, as the page hands it to the worker. */
export interface ServerRelay {
  /** Sends one frame to `to` through the server; the frame may be kept (transferred). */
  readonly send: (to: string, frame: Uint8Array) => void;
  /** Largest frame the server relays, bytes: relayed messages are chunked to it. */
  readonly maxFrameBytes: number;
}

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
  /** A frame went to `peer` or came from it, by link or relay (the link policy's idea of use). */
  readonly onUse?: (peer: string) => void;
  /** A message is on its way to `peer`, which has no open link: the node would like one. */
  readonly onUnlinked?: (peer: string) => void;
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
  #relay: ServerRelay | undefined;
  /** Reassemblers of the frames each peer relayed through the server: a path of their own, apart from its link. */
  readonly #relayed = new Map<string, Reassembler>();
  /** Frames sent and received through the server's relay. */
  readonly relayedFrames = { sent: 0, received: 0 };

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

  /** Sends frames for peers without an open link through `relay` from now on; undefined stops it. */
  useServerRelay(relay: ServerRelay | undefined): void {
    this.#relay = relay;
  }

  /** Takes a frame that `from` sent through the server's relay (the server vouches for `from`). */
  receiveRelayed(from: string, data: unknown): void {
    let reassembler = this.#relayed.get(from);
    if (reassembler === undefined) {
      reassembler = new Reassembler(this.#options.maxMessageBytes);
      this.#relayed.set(from, reassembler);
    }
    this.relayedFrames.received++;
    const current = reassembler;
    this.#take(from, current, data, () => this.#relayed.get(from) === current);
  }

  /** Forgets what peers other than `members` relayed so far (they left the view). */
  retainRelayed(members: ReadonlySet<string>): void {
    for (const peer of this.#relayed.keys()) if (!members.has(peer)) this.#relayed.delete(peer);
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
    const faults = this.#options.faults;
    if (faults !== undefined) {
      // Copied now: a delayed send must not keep a buffer the caller may reuse.
      const copy = message.slice();
      faults.outgoing(to, () => this.#route(to, copy));
      return;
    }
    this.#route(to, message);
  }

  /** Sends a message on the path `to` has now: chunks at once when it is large for that path, else held. */
  #route(to: string, message: Uint8Array): void {
    this.#options.onUse?.(to);
    const link = this.#links.get(to);
    if (link === undefined || !link.isOpen()) this.#options.onUnlinked?.(to);
    const chunk = this.#maxFrameBytes(to) - CHUNK_HEADER_BYTES;
    if (message.byteLength > chunk) this.#sendChunks(to, toFrames(message, this.#nextMessageId++, chunk));
    else this.#hold(to, message);
  }

  /** Whether frames for `to` go through the server's relay now: there is one, and no open link to `to`. */
  #viaRelay(to: string): boolean {
    if (this.#relay === undefined) return false;
    const link = this.#links.get(to);
    return link === undefined || !link.isOpen();
  }

  /** The largest frame the path to `to` takes now. */
  #maxFrameBytes(to: string): number {
    return this.#viaRelay(to) ? Math.min(MAX_FRAME_BYTES, this.#relay!.maxFrameBytes) : MAX_FRAME_BYTES;
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
    if (!this.#links.has(to) && this.#relay === undefined) {
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
    const max = this.#maxFrameBytes(peer);
    let run: Uint8Array[] = [];
    for (const message of held) {
      // Held for a link that has since closed: too large for one frame of the relay, it goes in chunks.
      if (message.byteLength + 1 + 4 > max) {
        for (const frame of packFrames(run, max)) this.#deliver(peer, [frame]);
        run = [];
        this.#deliver(peer, toFrames(message, this.#nextMessageId++, max - CHUNK_HEADER_BYTES));
      } else run.push(message);
    }
    for (const frame of packFrames(run, max)) this.#deliver(peer, [frame]);
  }

  /** Sends frames to the link `to` has now. */
  #deliver(to: string, frames: Uint8Array[]): void {
    if (this.#viaRelay(to)) {
      const relay = this.#relay!;
      for (const frame of frames) {
        if (frame.byteLength > relay.maxFrameBytes) {
          this.dropped++;
          continue;
        }
        this.relayedFrames.sent++;
        relay.send(to, frame);
      }
      return;
    }
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
    this.#take(peer, reassembler, data, () => this.#links.get(peer) === link);
  }

  /** Joins a frame of `peer` into messages and hands them on, while `current` holds (the path was not replaced). */
  #take(peer: string, reassembler: Reassembler, data: unknown, current: () => boolean): void {
    this.#options.onUse?.(peer);
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
        if (!current()) return;
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
