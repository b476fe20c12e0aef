/**
 * A rogue member for the tests of malformed peer frames: a page that is not the demo but speaks its protocols with
 * the same stock libraries (socket.io-client's browser build, simple-peer's prebuilt bundle). It joins a cluster
 * through the real signalling server, opens a real WebRTC connection to one member the way the client's mesh does,
 * and then writes whatever bytes the test hands it onto the channel that member's worker reads: the negotiated
 * data-plane channel, which the victim transfers to its worker or relays to it, by its data plane. Nothing in the victim
 * is bypassed or stubbed: its mesh, its relay (if any), its links, its frame reassembly and its decoder all run.
 */
import { createRequire } from 'node:module';
import type { BrowserContext, Page } from '@playwright/test';
import type { SignalingServer } from '../../signaling/server.ts';
import type { Plane } from './fixtures.ts';
import { PROTOCOL_VERSION } from '../../signaling/events.ts';

const require = createRequire(import.meta.url);

/** The negotiated channel id of the data plane (`DATA_CHANNEL_ID` in client/mesh.ts). */
const DATA_PLANE_CHANNEL_ID = 512;

/** What the test tells the rogue page. */
interface RogueSetup {
  readonly url: string;
  readonly cluster: string;
  readonly rogueId: string;
  readonly victimId: string;
  readonly plane: Plane;
  readonly channelId: number;
  readonly domain: string;
  readonly protocol: number;
}

/** A rogue member connected to one victim. */
export class RoguePeer {
  private constructor(
    readonly page: Page,
    readonly id: string,
  ) {}

  /**
   * Opens the rogue page in `context`, joins `cluster` as `id` and connects to `victimId` over `plane`. The id must
   * sort before the victim's, so that the rogue is the side that offers (the mesh lets the smaller id initiate).
   * It joins in failure domain `domain` (default `rogue`): in the tabs' own domain it is one more member of their
   * profile, and owns no more than its share of the ring.
   */
  static async connect(
    context: BrowserContext,
    server: SignalingServer,
    options: { cluster: string; id: string; victimId: string; plane: Plane; domain?: string },
  ): Promise<RoguePeer> {
    if (!(options.id < options.victimId)) throw new Error('the rogue id must sort before the victim id');
    const page = await context.newPage();
    // Any page of the server's origin will do; /healthz is small and runs no script of its own.
    await page.goto(new URL('/healthz', server.url).href);
    await page.addScriptTag({ path: require.resolve('socket.io-client/dist/socket.io.js') });
    await page.addScriptTag({ path: require.resolve('simple-peer/simplepeer.min.js') });
    const setup: RogueSetup = {
      url: server.url,
      cluster: options.cluster,
      rogueId: options.id,
      victimId: options.victimId,
      plane: options.plane,
      channelId: DATA_PLANE_CHANNEL_ID,
      domain: options.domain ?? 'rogue',
      protocol: PROTOCOL_VERSION,
    };
    await page.evaluate(async (setup) => {
      type Emitter = { on(event: string, listener: (...args: never[]) => void): void };
      type Socket = Emitter & {
        emit(event: string, payload: unknown, ack: (response: { ok: boolean; error?: unknown }) => void): void;
      };
      type Peer = Emitter & { _pc: RTCPeerConnection; signal(data: unknown): void; send(data: unknown): void };
      const g = window as unknown as {
        io: (url: string, options: object) => Socket;
        SimplePeer: new (options: object) => Peer;
        rogue: { send(frame: number[] | string): void; received: number[][] };
      };
      const socket = g.io(setup.url, { transports: ['websocket'] });
      await new Promise<void>((resolve) => socket.on('connect', () => resolve()));
      const joined = await new Promise<{ ok: boolean; error?: unknown }>((resolve) =>
        socket.emit(
          'join',
          { cluster: setup.cluster, nodeId: setup.rogueId, domain: setup.domain, protocol: setup.protocol },
          resolve,
        ),
      );
      if (!joined.ok) throw new Error(`the rogue's join was refused: ${JSON.stringify(joined.error)}`);
      setInterval(() => socket.emit('heartbeat', {}, () => {}), 500);

      const conn = 'rogue-connection';
      const peer = new g.SimplePeer({ initiator: true, trickle: true, config: { iceServers: [] } });
      const channel = peer._pc.createDataChannel('dynamesh', { negotiated: true, id: setup.channelId });
      const received: number[][] = [];
      const keep = (data: ArrayBuffer | Uint8Array): void => void received.push([...new Uint8Array(data)]);
      peer.on('signal', (payload: never) =>
        socket.emit('signal', { to: setup.victimId, data: { conn, payload } }, () => {}),
      );
      socket.on('signal', (message: { from: string; data: { conn: string; payload: unknown } }) => {
        if (message.from === setup.victimId && message.data.conn === conn) peer.signal(message.data.payload);
      });
      await new Promise<void>((resolve, reject) => {
        peer.on('connect', () => resolve());
        peer.on('error', (error: Error) => reject(error));
      });
      channel.binaryType = 'arraybuffer';
      channel.onmessage = (event: MessageEvent<ArrayBuffer>) => keep(event.data);
      if (channel.readyState !== 'open') await new Promise((resolve) => (channel.onopen = resolve));
      g.rogue = {
        received,
        send(frame) {
          if (typeof frame === 'string') channel.send(frame);
          else channel.send(new Uint8Array(frame));
        },
      };
    }, setup);
    return new RoguePeer(page, options.id);
  }

  /** Writes one frame, bytes or text, onto the victim's data-plane channel. */
  async send(frame: Uint8Array | string): Promise<void> {
    await this.page.evaluate(
      (frame) => (window as unknown as { rogue: { send(f: number[] | string): void } }).rogue.send(frame),
      typeof frame === 'string' ? frame : [...frame],
    );
  }

  /** Every frame the victim sent back, in order. */
  async received(): Promise<Uint8Array[]> {
    const frames = await this.page.evaluate(
      () => (window as unknown as { rogue: { received: number[][] } }).rogue.received,
    );
    return frames.map((f) => new Uint8Array(f));
  }
}
