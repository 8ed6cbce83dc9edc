// Searches this process's memory for secrets without ever holding them in clear: a secret is
// given XOR-masked and compared on the fly, so only 4 unmasked bytes exist here at a time.
import { closeSync, openSync, readFileSync, readSync } from 'node:fs';
import { writeHeapSnapshot } from 'node:v8';
import { rmSync } from 'node:fs';

export const MASK = 0x5a;

function prefixOf(masked: Uint8Array): Buffer {
  return Buffer.from([masked[0]! ^ MASK, masked[1]! ^ MASK, masked[2]! ^ MASK, masked[3]! ^ MASK]);
}

/** True when `haystack` contains the unmasked form of `masked`. */
export function containsMasked(haystack: Uint8Array, masked: Uint8Array): boolean {
  const hay = Buffer.from(haystack.buffer, haystack.byteOffset, haystack.byteLength);
  const prefix = prefixOf(masked);
  for (let i = hay.indexOf(prefix); i !== -1; i = hay.indexOf(prefix, i + 1)) {
    if (i + masked.length > hay.length) return false;
    let j = 4;
    while (j < masked.length && hay[i + j] === (masked[j]! ^ MASK)) j++;
    if (j === masked.length) return true;
  }
  return false;
}

export interface ScanReport {
  found: boolean[];
  regions: number;
  bytes: number;
  unreadable: number;
}

/** Scans every readable mapping of /proc/self/mem (JS heap, Buffers, native allocations, stacks). */
export function scanOwnMemory(secrets: readonly Uint8Array[]): ScanReport {
  return scanProcessMemory('self', secrets);
}

/**
 * Scans every readable mapping of another process (`/proc/PID/mem`; needs ptrace access, e.g.
 * root). Stop the process (SIGSTOP) first, so its memory does not move under the scan.
 */
export function scanProcessMemory(pid: number | 'self', secrets: readonly Uint8Array[]): ScanReport {
  const report: ScanReport = { found: secrets.map(() => false), regions: 0, bytes: 0, unreadable: 0 };
  const overlap = Math.max(...secrets.map((s) => s.length));
  const chunk = Buffer.allocUnsafe(8 * 1024 * 1024);
  const fd = openSync(`/proc/${pid}/mem`, 'r');
  try {
    for (const line of readFileSync(`/proc/${pid}/maps`, 'utf8').split('\n')) {
      const m = /^([0-9a-f]+)-([0-9a-f]+) (\S+)\s+\S+\s+\S+\s+\S+\s*(.*)$/.exec(line);
      if (m === null || !m[3]!.startsWith('r') || /\[(vvar|vsyscall|vvar_vclock)\]/.test(m[4]!)) continue;
      const start = parseInt(m[1]!, 16);
      const end = parseInt(m[2]!, 16);
      report.regions++;
      for (let at = start; at < end; at += chunk.length - overlap) {
        const len = Math.min(chunk.length, end - at);
        let n: number;
        try {
          n = readSync(fd, chunk, 0, len, at);
        } catch {
          report.unreadable++;
          break;
        }
        report.bytes += n;
        const view = chunk.subarray(0, n);
        secrets.forEach((s, k) => {
          if (!report.found[k] && containsMasked(view, s)) report.found[k] = true;
        });
        if (at + len >= end) break;
      }
    }
  } finally {
    closeSync(fd);
  }
  return report;
}

/** Writes a V8 heap snapshot and searches it (strings and on-heap data; Buffers live elsewhere). */
export function scanHeapSnapshot(secrets: readonly Uint8Array[], path: string): boolean[] {
  const file = writeHeapSnapshot(path);
  try {
    const text = readFileSync(file);
    return secrets.map((s) => containsMasked(text, s));
  } finally {
    rmSync(file, { force: true });
  }
}
