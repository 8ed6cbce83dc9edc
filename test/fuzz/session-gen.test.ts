import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import mqttPacket, { type Packet } from 'mqtt-packet';
import { ENROLLED, SECURE_TOPICS, type EnvelopePool } from '../../fuzz/mqtt-gen.js';
import { Prng } from '../../fuzz/prng.js';
import { caseScripts, type ConnectionScript } from '../../fuzz/session-gen.js';

/** Stand-in envelopes: the generator only picks them (their checks are the broker's). */
const ENVELOPE = Buffer.from('0005', 'hex');
const pool: EnvelopePool = new Map(ENROLLED.map((id) => [id, new Map(SECURE_TOPICS.map((t) => [t, [ENVELOPE]]))]));

function sends(script: ConnectionScript): Buffer[] {
  return script.steps.flatMap((s) => (s.kind === 'send' ? [s.bytes] : []));
}

/** Each send parsed alone; mutated ones mostly fail to parse and are left out. */
function parsed(script: ConnectionScript): Packet[] {
  const out: Packet[] = [];
  for (const bytes of sends(script)) {
    const parser = mqttPacket.parser({ protocolVersion: script.version });
    parser.on('packet', (p: Packet) => out.push(p));
    parser.on('error', () => undefined);
    parser.parse(bytes);
  }
  return out;
}

describe('fuzz session generator', () => {
  it('generates the same bytes for the same seed and case index', () => {
    const bytesOf = (index: number): string[] => caseScripts(new Prng(11, 1, index), pool).map((s) => Buffer.concat(sends(s)).toString('hex'));
    assert.deepEqual(bytesOf(4), bytesOf(4));
    assert.notDeepEqual(bytesOf(4), bytesOf(5));
  });

  it('reaches every session feature the harness promises within 300 cases', () => {
    const seen = new Set<string>();
    for (let i = 0; i < 300; i++) {
      const scripts = caseScripts(new Prng(1, 1, i), pool);
      const ids = new Map<string, number>();
      for (const script of scripts) {
        if (script.steps.some((s) => s.kind === 'close' && s.how === 'destroy')) seen.add('reset');
        if (script.steps.some((s) => s.kind === 'close' && s.how === 'end')) seen.add('fin');
        for (const p of parsed(script)) {
          seen.add(`${p.cmd} v${script.version}`);
          if (p.cmd === 'connect') {
            ids.set(p.clientId, (ids.get(p.clientId) ?? 0) + 1);
            if (p.will) seen.add('will');
            if (p.will?.properties) seen.add('will properties');
            const props = (p.properties ?? {}) as Record<string, unknown>;
            if (Object.entries(props).some(([k, v]) => k !== 'userProperties' && Array.isArray(v))) seen.add('repeated property');
          }
          if (p.cmd === 'publish') {
            if (p.qos === 2) seen.add('qos 2');
            if (p.retain) seen.add('retain');
            if (p.properties?.topicAlias !== undefined && p.topic === '') seen.add('topic alias alone');
            if (p.topic.startsWith('secure/') && Buffer.from(p.payload).equals(ENVELOPE)) seen.add('envelope');
            if (p.topic.startsWith('$tee/')) seen.add('$tee request');
          }
          if (p.cmd === 'subscribe') {
            if (p.properties?.subscriptionIdentifier !== undefined) seen.add('subscription identifier');
            if (p.subscriptions.some((s) => s.topic.startsWith('$share/'))) seen.add('$share');
          }
        }
      }
      if ([...ids.values()].some((n) => n > 1)) seen.add('takeover');
    }
    const wanted = [
      'connect v3', 'connect v4', 'connect v5', 'will', 'will properties', 'repeated property', 'qos 2', 'retain', 'topic alias alone', 'envelope',
      '$tee request', 'subscription identifier', '$share', 'takeover', 'pubrel v5', 'disconnect v5', 'reset', 'fin',
    ];
    assert.deepEqual(wanted.filter((w) => !seen.has(w)), []);
  });
});
