// The hostile broker's hands: a TCP proxy between clients and the real broker. Bytes towards the
// broker pass unchanged; packets towards a client are decoded with mqtt-packet, and the next
// PUBLISH can be replaced by whatever a queued rewrite returns (changed, duplicated, swapped,
// dropped), then encoded again. Everything the host can do to a message in flight.
import { createServer, connect, type AddressInfo, type Server, type Socket } from 'node:net';
import mqttPacket from 'mqtt-packet';
import type { IPublishPacket, Packet } from 'mqtt-packet';
import type { ProtectedClient } from '../../src/client/index.js';
import { startProtectedBroker, type ProtectedBroker } from './protected-broker.js';

/** What the client gets instead of `packet` (in order; empty = dropped). */
export type Rewrite = (packet: IPublishPacket) => IPublishPacket[] | Promise<IPublishPacket[]>;

export class MitmProxy {
  private readonly rewrites: Rewrite[] = [];
  private readonly sockets = new Set<Socket>();

  private constructor(private readonly server: Server, readonly port: number) {}

  /** Listens on 127.0.0.1 (ephemeral port) and relays every connection to `brokerPort`. */
  static async start(brokerPort: number): Promise<MitmProxy> {
    const server = createServer();
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const proxy = new MitmProxy(server, (server.address() as AddressInfo).port);
    server.on('connection', (client) => proxy.relay(client, connect(brokerPort, '127.0.0.1')));
    return proxy;
  }

  get url(): string {
    return `mqtt://127.0.0.1:${this.port}`;
  }

  /** The next PUBLISH the broker sends to a client through the proxy is rewritten by `rewrite`. */
  once(rewrite: Rewrite): void {
    this.rewrites.push(rewrite);
  }

  private relay(client: Socket, broker: Socket): void {
    for (const s of [client, broker]) {
      this.sockets.add(s);
      s.on('error', () => {});
      s.on('close', () => {
        this.sockets.delete(s);
        client.destroy();
        broker.destroy();
      });
    }
    // Towards the broker: unchanged; parsed only to learn the protocol version from CONNECT.
    const fromClient = mqttPacket.parser();
    let toClient: ReturnType<typeof mqttPacket.parser> | undefined;
    let protocolVersion = 4;
    let turn: Promise<void> = Promise.resolve(); // keeps packets to the client in order around async rewrites
    fromClient.on('packet', (p: Packet) => {
      if (p.cmd !== 'connect' || toClient) return;
      protocolVersion = p.protocolVersion ?? 4;
      toClient = mqttPacket.parser({ protocolVersion });
      toClient.on('packet', (q: Packet) => {
        turn = turn.then(async () => {
          const rewrite = q.cmd === 'publish' ? this.rewrites.shift() : undefined;
          const out = rewrite ? await rewrite(q as IPublishPacket) : [q];
          for (const o of out) client.write(mqttPacket.generate(o, { protocolVersion }));
        }).catch((err: Error) => {
          client.destroy(err);
        });
      });
    });
    client.on('data', (d: Buffer) => {
      fromClient.parse(d);
      broker.write(d);
    });
    broker.on('data', (d: Buffer) => toClient?.parse(d));
  }

  async close(): Promise<void> {
    for (const s of this.sockets) s.destroy();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }
}

/**
 * A protected broker (trusted component in its own process) with a proxy in front, and an enrolled
 * publisher connected straight to the broker; closed together.
 */
export async function startBrokerBehindProxy(publisher: string): Promise<{ b: ProtectedBroker; proxy: MitmProxy; alice: ProtectedClient; close(): Promise<void> }> {
  const b = await startProtectedBroker('process');
  const proxy = await MitmProxy.start(b.port);
  const close = async (): Promise<void> => {
    await proxy.close();
    await b.close();
  };
  try {
    return { b, proxy, alice: await b.enrolled(publisher), close };
  } catch (err) {
    await close();
    throw err;
  }
}
