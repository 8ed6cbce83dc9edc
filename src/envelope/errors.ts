// Error and refusal codes of the command interface (docs/protocol.md §8). Numbers are wire values.

export const TEE_ERRORS = {
  'bad-request': 1,
  'unknown-command': 2,
  'not-initialised': 3,
  'unsupported-version': 4,
  'internal': 5,
  'not-provisioned': 6,
  'provisioning-mismatch': 7,
  'state-incomplete': 8,
  'state-rollback': 9,
  'malformed-header': 10,
  'sender-mismatch': 11,
  'wrong-topic': 12,
  'header-auth-failed': 13,
  'unknown-sender': 14,
  'revoked-sender': 15,
  'publish-denied': 16,
  'sealed-invalid': 17,
  'group-unknown': 18,
  'group-stale': 19,
  'enrol-malformed': 20,
  'enrol-decrypt-failed': 21,
  'token-missing': 22,
  'token-invalid': 23,
  'token-expired': 24,
  'token-identity-mismatch': 25,
  'token-replayed': 26,
  'already-enrolled': 27,
  'identity-revoked': 28,
  'rotate-proof-invalid': 29,
  'policy-invalid': 30,
  'policy-rollback': 31,
  'policy-malformed': 32,
  'revocation-invalid': 33,
  'operator-mismatch': 34,
  'store-failure': 35,
  'endorsement-invalid': 36,
  'unknown-identity': 37,
  'bad-identity': 38,
  'sealed-missing': 39,
  'benchmark-only': 50,
  'revocation-replayed': 51,
  'mode-invalid': 52,
  'mode-replayed': 53,
  'state-conflict': 54,
  'operator-change-invalid': 55,
  'operator-change-replayed': 56,
  // Per-recipient refusals inside a re-wrap result (never thrown for the whole batch).
  'recipient-unknown': 40,
  'recipient-revoked': 41,
  'read-denied': 42,
  'recipient-sealed-invalid': 43,
  'recipient-bad-identity': 44,
} as const;

export type TeeErrorCode = keyof typeof TEE_ERRORS;
export type RefusalCode = 'recipient-unknown' | 'recipient-revoked' | 'read-denied' | 'recipient-sealed-invalid' | 'recipient-bad-identity';

const BY_NUMBER = new Map<number, TeeErrorCode>(Object.entries(TEE_ERRORS).map(([k, v]) => [v, k as TeeErrorCode]));

export function codeFromNumber(n: number): TeeErrorCode {
  return BY_NUMBER.get(n) ?? 'internal';
}

/** Every refusal of the trusted component: `code` is stable and documented, `message` is for people. */
export class TeeError extends Error {
  constructor(readonly code: TeeErrorCode, readonly detail: string) {
    super(`${code}: ${detail}`);
    this.name = 'TeeError';
  }
}

/** Runs a parser; any non-TeeError it throws becomes a TeeError with `code` and the parser's reason. */
export function orRefuse<T>(code: TeeErrorCode, parse: () => T): T {
  try {
    return parse();
  } catch (err) {
    if (err instanceof TeeError) throw err;
    throw new TeeError(code, (err as Error).message);
  }
}
