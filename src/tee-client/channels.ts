// How the broker reaches a trusted component that is not its plain child: the child started as
// another OS user, or a standalone `mqt-tz tee serve` over a Unix socket. Both speak the frames of
// docs/protocol.md §8, exactly as over the child's pipes.
import { connect } from 'node:net';
import { spawnTrustedProcess, type FrameChannel } from './host.js';
import { CannotRestart } from './restarting-transport.js';

export interface OsIdentity {
  uid: number;
  gid: number;
}

/**
 * The trusted child started as root and told to drop to `user` before it reads any state (its own
 * setuid also makes the kernel mark it non-dumpable; see src/tee/main.ts).
 */
export function trustedChildAs(user: OsIdentity): () => FrameChannel {
  return () => {
    // Starting it as another user takes root, which the broker gives up after binding its
    // listeners: a trusted child lost after that cannot be started again (the service can).
    if (process.getuid !== undefined && process.getuid() !== 0) {
      throw new CannotRestart(`the trusted process cannot be started again as uid ${user.uid} by a broker that gave up root: restart the broker, or run the trusted component as a service (mqt-tz tee serve) that the broker reconnects to`);
    }
    return spawnTrustedProcess(['--user', `${user.uid}:${user.gid}`]);
  };
}

/** A connection to `mqt-tz tee serve` on `path`; its process id is not known here. */
export function trustedSocket(path: string): () => FrameChannel {
  return () => {
    const socket = connect(path);
    let failure: Error | undefined;
    socket.on('error', (err) => (failure = err));
    const gone = new Promise<string>((resolve) =>
      socket.once('close', () =>
        resolve(failure !== undefined ? `service at ${path} unreachable (${failure.message})` : `service at ${path} closed the connection (restarted, or serving another broker)`),
      ),
    );
    return { pid: undefined, input: socket, output: socket, gone };
  };
}
