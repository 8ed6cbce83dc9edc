/**
 * The reserved topics on which clients reach the trusted component through the broker
 * (docs/protocol.md §7a). Shared by the broker's relay and the client SDK (browser-safe: no imports).
 */
export const TEE_TOPIC_PREFIX = '$tee/';

export const TEE_REQUEST_TOPICS = {
  info: '$tee/info/request',
  enrol: '$tee/enrol/request',
  rotate: '$tee/rotate/request',
  policy: '$tee/policy/request',
  revoke: '$tee/revoke/request',
  endorse: '$tee/endorse/request',
  mode: '$tee/mode/request',
  operator: '$tee/operator/request',
} as const;
export type TeeRequestKind = keyof typeof TEE_REQUEST_TOPICS;

/** Where a v3.1.1 client (no Response Topic) gets its answers: `$tee/response/{client id}`. */
export const TEE_RESPONSE_PREFIX = '$tee/response/';

export function v311ResponseTopic(clientId: string): string {
  return TEE_RESPONSE_PREFIX + clientId;
}

/** First byte of every answer: the answer follows, or a UTF-8 error line. */
export const TEE_STATUS_OK = 0x00;
export const TEE_STATUS_ERROR = 0x01;
