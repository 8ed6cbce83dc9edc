// A case of the broker target: a few connections, each a script of packets (valid, or mutated
// once encoded), pauses, and an end (DISCONNECT, FIN, reset, or cut inside a packet).
import type { Packet } from 'mqtt-packet';
import * as gen from './mqtt-gen.js';
import { mutate } from './mutate.js';
import type { Prng } from './prng.js';

export type Step = { kind: 'send'; bytes: Buffer } | { kind: 'wait'; ms: number } | { kind: 'close'; how: 'end' | 'destroy' };

export interface ConnectionScript {
  version: gen.Version;
  steps: Step[];
}

const MUTATE_P = 0.12;

class ScriptWriter {
  readonly steps: Step[] = [];
  private last: Buffer = Buffer.alloc(2);

  constructor(private readonly p: Prng, private readonly ctx: gen.GenContext) {}

  /** Encodes the packet and, now and then, mutates the bytes (spliced with the previous packet). */
  send(packet: Packet): void {
    const bytes = gen.encode(packet, this.ctx.version);
    if (bytes === undefined) return;
    const out = this.p.chance(MUTATE_P) ? mutate(this.p, bytes, this.last) : bytes;
    this.last = bytes;
    this.steps.push({ kind: 'send', bytes: out });
  }

  raw(bytes: Buffer): void {
    this.steps.push({ kind: 'send', bytes });
  }

  wait(lo: number, hi: number): void {
    this.steps.push({ kind: 'wait', ms: this.p.range(lo, hi) });
  }
}

type Op = (w: ScriptWriter, p: Prng, ctx: gen.GenContext) => void | 'stop';

const ops: [weight: number, op: Op][] = [
  [25, (w, p, ctx) => w.send(gen.publish(p, ctx))],
  [10, (w, p, ctx) => w.send(gen.publish(p, ctx, { topic: p.pick(gen.SECURE_TOPICS) }))],
  [15, (w, p, ctx) => w.send(gen.subscribe(p, ctx))],
  [4, (w, p, ctx) => w.send(gen.unsubscribe(p, ctx))],
  [6, (w, p, ctx) => w.send(gen.publish(p, ctx, { topic: p.pick(['$tee/info/request', '$tee/enrol/request', '$tee/rotate/request', '$tee/policy/request']) }))],
  // A QoS 2 flow from the client, left open or completed (PUBREL) after a pause.
  [8, (w, p, ctx) => {
    w.send(gen.publish(p, ctx, { qos: 2 }));
    w.wait(0, 20);
    if (p.chance(0.6)) w.send({ cmd: 'pubrel', messageId: ctx.nextId });
  }],
  // Topic aliases: set one, use it alone, then one the broker never saw or beyond its maximum.
  [6, (w, p, ctx) => {
    if (ctx.version !== 5) return;
    const alias = p.pick([1, 2, 16, 17, 65535]);
    const t = gen.topic(p, ctx);
    w.send(gen.publish(p, ctx, { topic: t, alias }));
    w.send(gen.publish(p, ctx, { topic: t, alias, aliasOnly: true }));
    if (p.chance(0.3)) w.send(gen.publish(p, ctx, { topic: t, alias: alias + 3, aliasOnly: true }));
  }],
  [4, (w, p, ctx) => w.send(gen.strayAck(p, ctx))],
  [3, (w) => w.send({ cmd: 'pingreq' })],
  [1, (w, p, ctx) => (ctx.version === 5 ? w.send(gen.auth(p)) : undefined)],
  [1, (w, p) => w.raw(p.bytes(p.range(1, 40)))],
  [1, (w, p, ctx) => w.send(gen.connect(p, ctx))], // a second CONNECT is a protocol error
  [3, (w, p, ctx) => {
    w.send(gen.disconnect(p, ctx));
    return 'stop';
  }],
];
const TOTAL_WEIGHT = ops.reduce((sum, [weight]) => sum + weight, 0);

function pickOp(p: Prng): Op {
  let r = p.int(TOTAL_WEIGHT);
  for (const [weight, op] of ops) {
    if (r < weight) return op;
    r -= weight;
  }
  return ops[0]![1];
}

export function connectionScript(p: Prng, envelopes: gen.EnvelopePool, clientId: string): ConnectionScript {
  const ctx: gen.GenContext = { version: p.pick([3, 4, 4, 5, 5, 5] as const), clientId, envelopes, nextId: p.int(65535) };
  const w = new ScriptWriter(p, ctx);
  w.wait(0, 40);
  if (p.chance(0.97)) w.send(gen.connect(p, ctx));
  w.wait(5, 30);
  for (let n = p.range(0, 12); n > 0; n--) {
    if (p.chance(0.03)) {
      // Cut inside a packet: part of its bytes, then the connection is gone.
      const bytes = gen.encode(gen.publish(p, ctx), ctx.version);
      if (bytes !== undefined) w.raw(bytes.subarray(0, p.int(bytes.length)));
      w.steps.push({ kind: 'close', how: 'destroy' });
      return { version: ctx.version, steps: w.steps };
    }
    if (pickOp(p)(w, p, ctx) === 'stop') break;
    w.wait(0, 15);
  }
  const end = p.int(10);
  if (end < 4) w.steps.push({ kind: 'close', how: 'end' });
  else if (end < 8) w.steps.push({ kind: 'close', how: 'destroy' });
  else {
    // Left open a while: keep alive, queued deliveries, the next takeover of its client id.
    w.wait(50, 1200);
    w.steps.push({ kind: 'close', how: 'destroy' });
  }
  return { version: ctx.version, steps: w.steps };
}

/** Two to six connections; client ids from a small pool, so takeovers (same id) are common. */
export function caseScripts(p: Prng, envelopes: gen.EnvelopePool): ConnectionScript[] {
  const scripts: ConnectionScript[] = [];
  for (let n = p.range(2, 6); n > 0; n--) scripts.push(connectionScript(p.fork(n), envelopes, gen.clientId(p)));
  return scripts;
}
