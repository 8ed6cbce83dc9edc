/**
 * V8 flags the broker runs with: `npm start` carries them, and the benchmark starts our broker with
 * them; a test keeps the two equal. The `mqt-tz` command keeps a plain `#!/usr/bin/env node` line:
 * flags on a shebang need `env -S`, a GNU and BSD extension that a minimal `env` (small container
 * images) may lack, and a command that fails to start is worse than a slower broker (the README
 * says how to add them).
 *
 * Why: a broker's live heap is small (~10 MB routing at full speed) while it allocates fast, and
 * V8 sizes the old generation from the live heap. With the limit that close, V8 keeps starting
 * incremental marking (a full mark-compact every 50–100 ms under load, its marking threads on the
 * cores the broker needs). A 64 MB floor leaves full collections to real growth; young garbage is
 * still collected by scavenges. Measured in docs/benchmarks.md ("Garbage collection").
 *
 * `--no-lazy-feedback-allocation`: V8 gives a function its feedback vector (where inline caches
 * learn the shapes they see) only after it has run a while. The broker's per-batch and per-delivery
 * functions then kept generic property loads (the LoadIC builtin per access) into steady state; with
 * feedback from the first call the protected broker spent ~17 % less CPU per message at 1 -> 1
 * (docs/benchmarks.md, "The protected path").
 *
 * `--min-semi-space-size=16` (V8's maximum here): the young generation starts at the size any load
 * grows it to (2 x 16 MB) and stays there. Otherwise it grew from 1 MB during the first busy
 * seconds and shrank again when traffic ebbed, and whatever came next paid for the growth: a burst of
 * 10 000 connects ~1.6 KiB of RSS per connection (docs/benchmarks.md, "Garbage collection").
 */
export const BROKER_NODE_FLAGS: readonly string[] = ['--initial-old-space-size=64', '--min-semi-space-size=16', '--no-lazy-feedback-allocation'];
