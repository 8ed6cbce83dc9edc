// How the host asks the OS to schedule the trusted component's process (Linux only).
//
// Under load the broker wakes the trusted process once per re-wrap batch. Under the default policy
// (SCHED_OTHER) a freshly woken process may preempt the task that woke it, so on a machine with as
// many busy tasks as cores the broker's event loop is pushed off its CPU at its own pipe writes
// (14-18 % of its time waiting for a CPU at 1 -> 1 on 2 cores). SCHED_BATCH keeps the trusted
// process's fair share of the CPU (same weight, same nice) and only gives up that wake-up
// preemption: it runs on an idle core at once, or when the running task's slice ends. Setting it
// needs no privilege. It is an option, not the default: it helped at 1 and 8 subscribers per
// message and cost at 32 and 128, where each answer holds up a small window of messages
// (docs/benchmarks.md, "Scheduling the trusted process").
import { execFile } from 'node:child_process';
import { accessSync, constants } from 'node:fs';
import { delimiter, join } from 'node:path';

/** 'default': whatever the broker itself runs under; 'batch': SCHED_BATCH (Linux). */
export type TeeScheduling = 'batch' | 'default';

/** `chrt` (util-linux) on the broker's PATH, or undefined. */
function findChrt(): string | undefined {
  for (const dir of (process.env.PATH ?? '').split(delimiter)) {
    if (dir.length === 0) continue;
    const candidate = join(dir, 'chrt');
    try {
      accessSync(candidate, constants.X_OK);
      return candidate;
    } catch {
      // not in this directory
    }
  }
  return undefined;
}

/**
 * Puts every thread of process `pid` under SCHED_BATCH (threads it starts later inherit it).
 * Never fails the start: without `chrt`, or if the OS refuses, it warns and the process keeps the
 * default policy.
 */
export function useBatchScheduling(pid: number, warn: (message: string) => void): Promise<void> {
  if (process.platform !== 'linux') return Promise.resolve();
  const chrt = findChrt();
  const fallback = 'the trusted component keeps the default scheduling policy';
  if (chrt === undefined) {
    warn(`chrt (util-linux) not found on PATH: ${fallback}`);
    return Promise.resolve();
  }
  return new Promise((resolve) => {
    execFile(chrt, ['--all-tasks', '--batch', '--pid', '0', String(pid)], { timeout: 5000 }, (err, _stdout, stderr) => {
      if (err) warn(`chrt --batch failed (${(stderr || err.message).trim()}): ${fallback}`);
      resolve();
    });
  });
}
