/**
 * The MedTech workload through the protected path, two ways:
 *
 * - `protectedEcgPath`: what a ward's devices do. Every patient is an enrolled identity that seals
 *   each sample batch with the client SDK as it is sent (send time inside the plaintext); clinicians
 *   open every delivery with their replay window, so latency runs from the patient's seal to the
 *   clinician's plaintext and `delivered` counts only batches that opened. At 5 000 patients this is
 *   10 000 seals and 20 000 opens a second, more than the load generator's one thread does beside a
 *   broker on two cores (measured: it ran at 103 % of a core and fell behind).
 * - `presealedEcgPath`: the method of the protected fan-out rows, for fleets the load generator
 *   cannot seal live. Every batch of the run is sealed before it starts (`sealFast`, the layout of
 *   the SDK's `sealEnvelope`) with its send time left 0; the patient records when it wrote each one;
 *   a clinician reads the sequence number from the re-wrapped header (in clear, authenticated by the
 *   AEADs) and looks the send time up. A sample of clinician 0's deliveries is opened after the run
 *   with the SDK's `openEnvelope` and must hold exactly the batch its sequence number names.
 */
import type { BrokerProcess } from './brokers.js';
import { ecgBatch, type EcgPath } from './ecg.js';
import { encodePublish, openClients } from './mqtt-raw.js';
import { clientKey, ensureEnrolled, envelopeSeq, sealFast, topicTagOf, wrapKeyOf } from './protected.js';
import { openEnvelope, ReplayWindow, sealEnvelope } from '../src/client/index.js';
import { senderOf, splitEnvelope } from '../src/envelope/envelope-layout.js';

const patientId = (p: number): string => `ecg-patient-${p}`;
const clinicianIds = (n: number): string[] => Array.from({ length: n }, (_, c) => `ecg-clinician-${c}`);
const topicPrefix = (tag: string): string => `secure/ward/${tag}/ecg/`;
const PATIENT_OF = 'ecg-patient-'.length;

/** The patient index of an envelope's sender. */
function patientOf(envelope: Buffer): number {
  return Number(senderOf(splitEnvelope(envelope).header).slice(PATIENT_OF));
}

export function protectedEcgPath(broker: BrokerProcess): EcgPath {
  let seq = Date.now() * 1024;
  let openFailures = 0;
  return {
    name: 'protected',
    stats: () => ({ openFailures }),
    async openPatients(port, patients, tag) {
      const ids = Array.from({ length: patients }, (_, p) => patientId(p));
      await ensureEnrolled(broker, ids);
      const keysOf = await Promise.all(ids.map((id) => clientKey(id)));
      const clients = await openClients(port, ids, 64);
      const packetIds = new Uint16Array(patients).fill(1);
      return {
        publish: (p, payload) => {
          const id = packetIds[p]!;
          packetIds[p] = id === 65535 ? 1 : id + 1;
          const topic = `${topicPrefix(tag)}p${p}`;
          void sealEnvelope({ key: keysOf[p]!, sender: ids[p]!, topic, seq: seq++, payload }).then((env) =>
            clients[p]!.write(encodePublish(topic, Buffer.from(env.buffer, env.byteOffset, env.byteLength), 1, id)),
          );
        },
        close: () => clients.forEach((c) => c.close()),
      };
    },
    async openClinicians(port, clinicians, tag, onBatch) {
      const ids = clinicianIds(clinicians);
      await ensureEnrolled(broker, ids);
      const keysOf = await Promise.all(ids.map((id) => clientKey(id)));
      const replay = ids.map(() => new ReplayWindow());
      const clients = await openClients(port, ids, 8, (c) => ({
        publish: (buf, start, end) => {
          // the raw client does not pass the topic on: the sender names the patient
          const envelope = Buffer.from(buf.subarray(start, end));
          const topic = `${topicPrefix(tag)}p${patientOf(envelope)}`;
          void openEnvelope({ key: keysOf[c]!, identity: ids[c]!, topic, envelope, replay: replay[c] }).then(
            (m) => onBatch(new DataView(m.payload.buffer, m.payload.byteOffset).getFloat64(0, true)),
            () => openFailures++,
          );
        },
      }));
      await Promise.all(clients.map((c) => c.subscribe(`${topicPrefix(tag)}#`, 1)));
      return { close: () => clients.forEach((c) => c.close()) };
    },
  };
}

/** Clinician 0's deliveries copied to open after the run: one in SAMPLE_EVERY, at most SAMPLE_MAX. */
const SAMPLE_EVERY = 50;
const SAMPLE_MAX = 400;

export function presealedEcgPath(broker: BrokerProcess): EcgPath {
  // batch k of patient p is sequence number seqBase + p * batches + k: rising per patient
  let seqBase = 0;
  let batches = 0;
  let prefix = '';
  /** When each batch was written (Infinity: not yet). */
  let sentAt = new Float64Array(0);
  /** Per clinician, batches delivered (a second delivery of one is counted, not passed on). */
  let seen: Uint8Array[] = [];
  let unknown = 0;
  let duplicates = 0;
  const samples: Buffer[] = [];
  let offered = 0;
  /** Known once runEcg has opened the clinicians, which it does before the patients. */
  let clinicianCount = 0;
  return {
    name: 'protected',
    async openPatients(port, patients, tag, batchesEach) {
      const ids = Array.from({ length: patients }, (_, p) => patientId(p));
      await ensureEnrolled(broker, ids);
      await Promise.all(ids.map((id) => clientKey(id)));
      batches = batchesEach;
      prefix = topicPrefix(tag);
      seqBase = Date.now() * 1024;
      sentAt = new Float64Array(patients * batches).fill(Infinity);
      seen = Array.from({ length: clinicianCount }, () => new Uint8Array(patients * batches));
      // every batch of the run as a QoS 1 PUBLISH, packet id k + 1, in one buffer
      const packets: Buffer[] = [];
      for (let p = 0; p < patients; p++) {
        const wrapKey = wrapKeyOf(ids[p]!);
        const topic = `${prefix}p${p}`;
        const tag = topicTagOf(topic);
        for (let k = 0; k < batches; k++) {
          const env = sealFast(wrapKey, ids[p]!, topic, seqBase + p * batches + k, ecgBatch(p, k, 0), tag);
          packets.push(encodePublish(topic, Buffer.from(env.buffer, env.byteOffset, env.byteLength), 1, k + 1));
        }
      }
      const offsets = new Uint32Array(packets.length + 1);
      for (let i = 0; i < packets.length; i++) offsets[i + 1] = offsets[i]! + packets[i]!.length;
      const all = Buffer.concat(packets, offsets[packets.length]);
      packets.length = 0;
      const clients = await openClients(port, ids, 64);
      return {
        publish: (p, payload) => {
          const i = p * batches + payload.readUInt32LE(8);
          sentAt[i] = payload.readDoubleLE(0);
          clients[p]!.write(all.subarray(offsets[i], offsets[i + 1]));
        },
        close: () => clients.forEach((c) => c.close()),
      };
    },
    async openClinicians(port, clinicians, tag, onBatch) {
      const ids = clinicianIds(clinicians);
      await ensureEnrolled(broker, ids);
      clinicianCount = clinicians;
      const clients = await openClients(port, ids, 8, (c) => ({
        publish: (buf, start, end) => {
          const i = envelopeSeq(buf, start) - seqBase;
          const at = sentAt[i];
          if (at === undefined || at === Infinity) {
            unknown++;
            return;
          }
          if (seen[c]![i]++ !== 0) {
            duplicates++;
            return;
          }
          onBatch(at);
          if (c === 0 && offered++ % SAMPLE_EVERY === 0 && samples.length < SAMPLE_MAX) samples.push(Buffer.from(buf.subarray(start, end)));
        },
      }));
      await Promise.all(clients.map((c) => c.subscribe(`${topicPrefix(tag)}#`, 1)));
      return { close: () => clients.forEach((c) => c.close()) };
    },
    async stats() {
      const identity = clinicianIds(1)[0]!;
      const key = await clientKey(identity);
      const replay = new ReplayWindow();
      let opened = 0;
      let openFailures = 0;
      for (const envelope of samples) {
        try {
          const p = patientOf(envelope);
          const m = await openEnvelope({ key, identity, topic: `${prefix}p${p}`, envelope, replay });
          const k = m.seq - seqBase - p * batches;
          if (m.sender !== patientId(p) || k < 0 || k >= batches || !ecgBatch(p, k, 0).equals(m.payload)) throw new Error('not the batch its sequence number names');
          opened++;
        } catch {
          openFailures++;
        }
      }
      return { opened, openFailures, unknown, duplicates };
    },
  };
}
