/**
 * A signalling server process for the partition test, started with `fork` under `--import tsx`. It loads the server
 * module at once but listens only when the parent sends `{ type: 'listen', options }`: the test keeps one such process
 * loaded in reserve, so that a restart takes the outage the nemesis chose, not the seconds a loaded two-core machine
 * needs to start Node, tsx and Socket.IO. Like `signaling/cli.ts`, SIGTERM closes the server cleanly; SIGKILL is a
 * crash.
 */
import { createSignalingServer, type SignalingServer, type SignalingServerOptions } from '../../signaling/server.ts';

/** What the parent sends. */
export interface ListenMessage {
  readonly type: 'listen';
  readonly options: SignalingServerOptions;
}

/** What the child sends: `loaded` once it can listen, `listening` once it does, `failed` if it could not. */
export type ChildMessage =
  | { readonly type: 'loaded' }
  | { readonly type: 'listening'; readonly url: string }
  | { readonly type: 'failed'; readonly message: string };

let server: SignalingServer | undefined;
let stopping = false;

function send(message: ChildMessage): void {
  process.send?.(message);
}

process.on('message', (message: ListenMessage) => {
  if (message.type !== 'listen' || server !== undefined) return;
  createSignalingServer(message.options).then(
    (started) => {
      server = started;
      started.logger.info({ url: started.url }, `signalling server listening on ${started.url}`);
      send({ type: 'listening', url: started.url });
    },
    (error: unknown) => {
      send({ type: 'failed', message: error instanceof Error ? error.message : String(error) });
      process.exit(1);
    },
  );
});

process.on('SIGTERM', () => {
  if (stopping) return;
  stopping = true;
  const force = setTimeout(() => process.exit(1), 5000);
  force.unref();
  void (server?.close() ?? Promise.resolve()).then(
    () => process.exit(0),
    () => process.exit(1),
  );
});

// The parent going away (a crashed test run) must not leave a server behind.
process.on('disconnect', () => process.exit(0));

send({ type: 'loaded' });
