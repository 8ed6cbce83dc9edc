import { test } from 'node:test';
import assert from 'node:assert/strict';
import { openEnvelope } from '../../src/client/crypto/index.js';
import { joinEnvelope } from '../../src/envelope/envelope-layout.js';
import { TeeError } from '../../src/envelope/errors.js';
import { readFileSync, readdirSync } from 'node:fs';
import { useBatchScheduling } from '../../src/tee-client/scheduling.js';
import { makeFixture } from '../helpers/tee/fixture.js';
import { publish, refusedUnchanged } from '../helpers/tee/publishing.js';

test('the process backend runs enrolment and pipelined re-wraps end to end, answering each call in its own slot', async () => {
  const f = await makeFixture('process', { cacheSize: 4 });
  try {
    const alice = await f.enrol('alice');
    const subs = await Promise.all(['s1', 's2', 's3', 's4', 's5', 's6'].map((id) => f.enrol(id)));
    const messages = await Promise.all(Array.from({ length: 60 }, (_, i) => publish(alice, `t/${i % 3}`, `message ${i}`, i + 1)));
    // All 60 calls are in flight at once; cache misses go out as storage requests meanwhile.
    const results = await Promise.all(messages.map((m, i) => f.tee.rewrap(m.header, `t/${i % 3}`, 'alice', subs.map((s) => s.identity))));
    for (let i = 0; i < messages.length; i += 7) {
      const s = subs[i % subs.length]!;
      const r = results[i]![i % subs.length]!;
      const opened = await openEnvelope({ key: s.key, identity: s.identity, topic: `t/${i % 3}`, envelope: joinEnvelope(r.header!, messages[i]!.payload) });
      assert.equal(new TextDecoder().decode(opened.payload), `message ${i}`);
    }
    const stats = await f.tee.stats();
    assert.equal(stats.rewrapped, 360);
    // Concurrent misses of one identity share a single sealed-store read.
    assert.ok(stats.cacheMisses > 0 && stats.storeReads > 0 && stats.storeReads <= stats.cacheMisses, `misses ${stats.cacheMisses}, reads ${stats.storeReads}`);
    await refusedUnchanged(f, 'wrong-topic', () => f.tee.rewrap(messages[0]!.header, 'elsewhere', 'alice', ['s1']));
  } finally {
    await f.dispose();
  }
});

test('the process backend forms groups and re-wraps for them pipelined: calls sent in one turn, cold key cache, each answered in order of need', async () => {
  const f = await makeFixture('process', { cacheSize: 2 });
  try {
    const alice = await f.enrol('alice');
    const subs = await Promise.all(['g1', 'g2', 'g3', 'g4'].map((id) => f.enrol(id)));
    const messages = await Promise.all(Array.from({ length: 30 }, (_, i) => publish(alice, `t/${i % 2}`, `message ${i}`, i + 1)));
    // Both formations and all 30 re-wraps leave in the same turn; formation needs sealed-store reads.
    const forms = [0, 1].map((t) => f.tee.formGroup(t + 1, `t/${t}`, subs.map((s) => s.identity)));
    const parts = await Promise.all(messages.map((m, i) => f.tee.groupRewrap((i % 2) + 1, m.header, `t/${i % 2}`, 'alice')));
    const groups = await Promise.all(forms);
    for (let i = 0; i < messages.length; i += 5) {
      const k = i % subs.length;
      const envelope = joinEnvelope(Buffer.concat([parts[i]!, groups[i % 2]!.members[k]!.header!]), messages[i]!.payload);
      const opened = await openEnvelope({ key: subs[k]!.key, identity: subs[k]!.identity, topic: `t/${i % 2}`, envelope });
      assert.equal(new TextDecoder().decode(opened.payload), `message ${i}`);
    }
    const stats = await f.tee.stats();
    assert.deepEqual([stats.groupsFormed, stats.rewrapped, stats.rewrapCalls], [2, 8, 30]);
  } finally {
    await f.dispose();
  }
});

/** Linux scheduling policy of every thread of `pid` (field 41 of /proc/PID/task/TID/stat: 0 SCHED_OTHER, 3 SCHED_BATCH). */
function threadPolicies(pid: number): Set<number> {
  const policies = new Set<number>();
  for (const tid of readdirSync(`/proc/${pid}/task`)) {
    let stat: string;
    try {
      stat = readFileSync(`/proc/${pid}/task/${tid}/stat`, 'utf8');
    } catch {
      continue; // a thread that ended since the listing
    }
    // fields from the 3rd on follow the command name's closing parenthesis
    policies.add(Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[41 - 3]));
  }
  return policies;
}

test('the trusted process runs every thread as a SCHED_BATCH task with scheduling "batch", and as the broker does by default', { skip: process.platform !== 'linux' }, async () => {
  const own = [...threadPolicies(process.pid)];
  for (const [scheduling, expected] of [['batch', [3]], [undefined, own]] as const) {
    const f = await makeFixture('process', { scheduling });
    try {
      assert.deepEqual([...threadPolicies(f.tee.pid!)], expected, `scheduling ${scheduling ?? '(default)'}`);
      // and it still answers
      assert.equal((await f.tee.info()).fingerprint, f.info.fingerprint);
    } finally {
      await f.dispose();
    }
  }
});

test('asking for SCHED_BATCH never fails the start: without chrt on PATH, or for a process the OS refuses, it warns and goes on', { skip: process.platform !== 'linux' }, async () => {
  const warnings: string[] = [];
  const before = [...threadPolicies(process.pid)];
  const path = process.env.PATH;
  process.env.PATH = '';
  try {
    await useBatchScheduling(process.pid, (m) => warnings.push(m));
  } finally {
    process.env.PATH = path;
  }
  // a pid above the kernel's maximum (2^22) belongs to no process
  await useBatchScheduling(2 ** 22 + 1, (m) => warnings.push(m));
  assert.equal(warnings.length, 2, warnings.join(' | '));
  assert.match(warnings[0]!, /chrt \(util-linux\) not found on PATH: the trusted component keeps the default scheduling policy/);
  assert.match(warnings[1]!, /chrt --batch failed \(.+\): the trusted component keeps the default scheduling policy/);
  assert.deepEqual([...threadPolicies(process.pid)], before, 'this process was not touched');
});

test('when the trusted process dies, pending and later calls fail with a clear error', async () => {
  const f = await makeFixture('process');
  try {
    const alice = await f.enrol('alice');
    const m = await publish(alice, 't', 'x');
    const pending = f.tee.rewrap(m.header, 't', 'alice', ['alice']);
    assert.ok(f.tee.pid !== undefined && f.tee.pid !== process.pid, 'runs as its own OS process');
    process.kill(f.tee.pid, 'SIGKILL');
    await pending.then(() => undefined, () => undefined);
    await assert.rejects(f.tee.stats(), (e: unknown) => e instanceof TeeError && e.code === 'internal' && /exited/.test(e.message));
  } finally {
    await f.dispose();
  }
});

test('a formed group keeps its parts in memory of their own, not in the pipe read its answer shared with other answers', async () => {
  const f = await makeFixture('process');
  try {
    const alice = await f.enrol('alice');
    const subs = await Promise.all(['m1', 'm2', 'm3'].map((id) => f.enrol(id)));
    await f.tee.formGroup(1, 't', subs.map((s) => s.identity));
    const m = await publish(alice, 't', 'x');
    // 300 re-wraps and a formation leave together; this process then stays busy while the trusted
    // one answers both, so the answers wait in the pipe and arrive in one read
    const parts = Array.from({ length: 300 }, () => f.tee.groupRewrap(1, m.header, 't', 'alice'));
    const forming = f.tee.formGroup(2, 't', subs.map((s) => s.identity));
    await new Promise((resolve) => setImmediate(resolve));
    for (const end = Date.now() + 500; Date.now() < end; );
    const [formed] = await Promise.all([forming, ...parts]);
    for (const member of formed.members) assert.ok(member.header!.buffer.byteLength < 4096, `a member part holds ${member.header!.buffer.byteLength} bytes`);
    assert.ok(formed.id.buffer.byteLength < 4096, `the group id holds ${formed.id.buffer.byteLength} bytes`);
  } finally {
    await f.dispose();
  }
});
