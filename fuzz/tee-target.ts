import type { TargetResult } from './broker-target.js';
import type { TeeCaseRecord, TeeFixture } from './case-file.js';
export async function fuzzTee(_o: { seed: number; ms: number; log: (l: string) => void }): Promise<TargetResult> { return {}; }
export async function replayTee(_f: TeeFixture, _c: readonly TeeCaseRecord[], _log: (l: string) => void): Promise<TargetResult> { return {}; }
