// Runs a case's connection scripts at once against the broker, answering its deliveries the way
// a sloppy client would (often, not always), and records every byte written; replays a record.
import { connect, type Socket } from 'node:net';
import mqttPacket, { type Packet } from 'mqtt-packet';
import type { ConnectionRecord, StreamEvent } from './case-file.js';
import type { Prng } from './prng.js';
import type { ConnectionScript } from './session-gen.js';

/** A connection still open this long after its case started is reset. */
export const CASE_MS = 2500;
const ACK_P = 0.85;

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

class RecordedSocket {
  readonly socket: Socket;
  readonly closed: Promise<void>;
  isClosed = false;

  constructor(port: number, private readonly started: number, readonly record: ConnectionRecord) {
    this.socket = connect({ host: '127.0.0.1', port });
    this.socket.on('error', () => undefined); // resets are the normal end of many cases
    this.closed = new Promise((resolve) => this.socket.once('close', () => {
      this.isClosed = true;
      resolve();
    }));
  }

  opened(): Promise<boolean> {
    return Promise.race([new Promise<boolean>((resolve) => this.socket.once('connect', () => resolve(true))), this.closed.then(() => false)]);
  }

  private event(e: Omit<StreamEvent, 'at'>): void {
    this.record.events.push({ at: Date.now() - this.started, ...e });
  }

  write(bytes: Buffer): void {
    if (this.isClosed || !this.socket.writable) return;
    this.event({ hex: bytes.toString('hex') });
    this.socket.write(bytes);
  }

  close(how: 'end' | 'destroy'): void {
    if (this.isClosed) return;
    this.event({ close: how });
    if (how === 'end') this.socket.end();
    else this.socket.destroy();
  }

  /** Until the deadline, then a reset. */
  async finish(deadline: number): Promise<void> {
    await Promise.race([this.closed, sleep(Math.max(0, deadline - Date.now()))]);
    if (!this.isClosed) this.socket.destroy();
  }
}

/** Acknowledges the broker's deliveries and releases, each with probability ACK_P. */
function respond(s: RecordedSocket, version: 3 | 4 | 5, p: Prng): void {
  const parser = mqttPacket.parser({ protocolVersion: version });
  let broken = false;
  parser.on('error', () => (broken = true));
  parser.on('packet', (packet: Packet) => {
    const answer = (reply: Packet): void => {
      if (p.chance(ACK_P)) s.write(mqttPacket.generate(reply, { protocolVersion: version }));
    };
    if (packet.cmd === 'publish' && packet.qos === 1) answer({ cmd: 'puback', messageId: packet.messageId });
    else if (packet.cmd === 'publish' && packet.qos === 2) answer({ cmd: 'pubrec', messageId: packet.messageId });
    else if (packet.cmd === 'pubrel') answer({ cmd: 'pubcomp', messageId: packet.messageId });
    else if (packet.cmd === 'pubrec') answer({ cmd: 'pubrel', messageId: packet.messageId });
  });
  s.socket.on('data', (chunk: Buffer) => {
    if (!broken) parser.parse(chunk);
  });
}

async function runScript(port: number, script: ConnectionScript, p: Prng, started: number, record: ConnectionRecord): Promise<void> {
  const s = new RecordedSocket(port, started, record);
  const deadline = started + CASE_MS;
  if (!(await s.opened())) return;
  respond(s, script.version, p);
  for (const step of script.steps) {
    if (s.isClosed || Date.now() > deadline) break;
    if (step.kind === 'send') s.write(step.bytes);
    else if (step.kind === 'wait') await sleep(step.ms);
    else s.close(step.how);
  }
  await s.finish(deadline);
}

/** Runs the scripts concurrently; the records fill in as bytes are written. */
export async function runCase(port: number, scripts: readonly ConnectionScript[], p: Prng, records: ConnectionRecord[]): Promise<void> {
  const started = Date.now();
  await Promise.all(scripts.map((script, i) => {
    const record: ConnectionRecord = { events: [] };
    records.push(record);
    return runScript(port, script, p.fork(i), started, record);
  }));
}

/** Sends a recorded case again: the same bytes on the same connections at the same times. */
export async function replayCase(port: number, records: readonly ConnectionRecord[]): Promise<void> {
  const started = Date.now();
  await Promise.all(records.map(async (record) => {
    const s = new RecordedSocket(port, started, { events: [] });
    if (!(await s.opened())) return;
    s.socket.resume(); // read and drop what the broker sends
    for (const e of record.events) {
      await sleep(started + e.at - Date.now());
      if (e.hex !== undefined) s.write(Buffer.from(e.hex, 'hex'));
      if (e.close !== undefined) s.close(e.close);
    }
    await s.finish(started + CASE_MS);
  }));
}
