// Seals a stretch of the protected runs' envelope pool into shared memory, off the load
// generator's thread and heap (see EnvelopePool.fill in bench/protected.ts).
import { parentPort, workerData } from 'node:worker_threads';
import { sealPacket, type PoolJob } from './protected.js';

const job = workerData as PoolJob;
const pool = Buffer.from(job.sab);
for (let k = job.from; k < job.n; k++) {
  const { packet } = sealPacket(job.wrapKey, job.seqBase, k, job.payloadBytes);
  if (packet.length !== job.packetLength) throw new Error('pool packets differ in length');
  packet.copy(pool, k * job.packetLength);
}
parentPort!.postMessage('done');
