/**
 * The page's end of a node host's signalling relay (`NodeHost.attachServer`): frames the node sends to peers it has
 * no open link with go out to the signalling server, the link plans it makes go to the mesh, and frames the server
 * relays to it come in. A tab's store and the always-on node both run it.
 */
import { InvalidArgumentError } from '../worker/errors.ts';
import { MAX_FRAME_BYTES } from '../worker/wire/frames.ts';

/** Where a {@link ServerRelay} sends what the node host posts. */
export interface ServerRelayTargets {
  /** Sends `frame` to member `to` through the signalling server. */
  frame(to: string, frame: ArrayBuffer): void;
  /** Opens and closes peer connections by the node's link plan. */
  plan(peers: string[]): void;
}

/** The two ends of a node host's relay port, the host's one handed over once. */
export class ServerRelay {
  readonly #port: MessagePort;
  #hostEnd: MessagePort | undefined;

  constructor(targets: ServerRelayTargets) {
    const { port1, port2 } = new MessageChannel();
    this.#port = port1;
    this.#hostEnd = port2;
    port1.onmessage = (event: MessageEvent<unknown>) => {
      const data = event.data;
      const message = (typeof data === 'object' && data !== null ? data : {}) as Record<string, unknown>;
      if (message['type'] === 'frame' && typeof message['to'] === 'string' && message['frame'] instanceof ArrayBuffer) {
        targets.frame(message['to'], message['frame']);
      } else if (message['type'] === 'plan' && Array.isArray(message['peers'])) {
        targets.plan((message['peers'] as unknown[]).filter((p): p is string => typeof p === 'string'));
      }
    };
  }

  /** The host's end of the port, for `NodeHost.attachServer`; undefined once taken. */
  take(): MessagePort | undefined {
    const end = this.#hostEnd;
    this.#hostEnd = undefined;
    return end;
  }

  /** Hands a frame the server relayed from `from` to the node; posted at once, queued until the host attaches. */
  deliver(from: string, frame: ArrayBuffer): void {
    this.#port.postMessage({ from, frame }, [frame]);
  }

  close(): void {
    this.#port.close();
    this.#hostEnd?.close();
  }
}

/**
 * The frame size a node relays through a server that takes frames of `maxFrameBytes` (its join's limits): at most the
 * wire's own frame limit.
 * @throws InvalidArgumentError when the server told none, or less than 1 KiB, which would carry no message whole.
 */
export function relayFrameBytes(maxFrameBytes: number | undefined): number {
  if (maxFrameBytes === undefined || !Number.isSafeInteger(maxFrameBytes) || maxFrameBytes < 1024) {
    throw new InvalidArgumentError(`the signalling server relays frames of ${String(maxFrameBytes)} bytes at most`);
  }
  return Math.min(maxFrameBytes, MAX_FRAME_BYTES);
}
