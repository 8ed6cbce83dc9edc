/**
 * Talks to the trusted component over MQTT itself, on reserved `$tee/...` topics (request/response):
 *
 *   $tee/info/request    → public identity (JSON): keys, measurement, fingerprint, endorsement
 *   $tee/enrol/request   → enrolment (opaque HPKE request bytes → opaque response bytes)
 *   $tee/rotate/request  → key rotation (likewise)
 *   $tee/policy/request  → load an operator-signed policy (answer: the policy serial, as text)
 *   $tee/revoke/request  → apply an operator-signed revocation (answer: empty)
 *   $tee/endorse/request → store an operator-signed endorsement (answer: empty)
 *   $tee/mode/request    → apply an operator-signed enrolment-mode change (answer: the new fingerprint)
 *
 * Policy, revocation, endorsement and mode statements are signed by the operator, so relaying them through the
 * untrusted broker is safe: the trusted component checks the signature, not the broker.
 *
 * The response goes to the request's MQTT 5 Response Topic (with its Correlation Data), or, for
 * v3.1.1 clients, to `$tee/response/{client id}`. Its payload starts with a status byte: 0x00 and
 * the response bytes, or 0x01 and a UTF-8 error line. The broker relays bytes it cannot read.
 */
import type { Logger } from 'pino';
import type { TrustedComponent } from '../tee-client/host.js';
import { TeeError } from '../tee-client/host.js';
import { TEE_REQUEST_TOPICS, TEE_STATUS_ERROR, TEE_STATUS_OK, TEE_TOPIC_PREFIX, v311ResponseTopic } from '../mqtt/tee-topics.js';

export interface RelayRequest {
  clientId: string;
  topic: string;
  payload: Buffer;
  responseTopic: string | undefined;
  correlationData: Buffer | undefined;
}

export type RelayReply = (topic: string, payload: Buffer, correlationData: Buffer | undefined) => void;

export class TeeRelay {
  requests = 0;
  failures = 0;

  constructor(
    private readonly tee: TrustedComponent,
    private readonly log: Logger,
  ) {}

  /** True if the topic is the relay's (the message is consumed, never routed as is). */
  static owns(topic: string): boolean {
    return topic.startsWith(TEE_TOPIC_PREFIX) && topic.endsWith('/request');
  }

  handle(req: RelayRequest, reply: RelayReply): void {
    this.requests++;
    const topic = req.responseTopic ?? v311ResponseTopic(req.clientId);
    this.answer(req).then(
      (body) => reply(topic, Buffer.concat([Buffer.from([TEE_STATUS_OK]), body]), req.correlationData),
      (err: unknown) => {
        this.failures++;
        const line = err instanceof TeeError ? err.message : 'trusted component unavailable';
        if (!(err instanceof TeeError)) this.log.error({ err, clientId: req.clientId }, 'trusted component call failed');
        else this.log.info({ clientId: req.clientId, code: err.code }, 'trusted component refused a request');
        reply(topic, Buffer.concat([Buffer.from([TEE_STATUS_ERROR]), Buffer.from(line)]), req.correlationData);
      },
    )
      // the reply is routed from a promise callback: a failure there must not become an unhandled rejection
      .catch((err: unknown) => this.log.error({ err, clientId: req.clientId }, 'replying to a trusted-component request failed'));
  }

  private async answer(req: RelayRequest): Promise<Buffer> {
    switch (req.topic) {
      case TEE_REQUEST_TOPICS.info:
        return Buffer.from(JSON.stringify(await this.tee.info()));
      case TEE_REQUEST_TOPICS.enrol:
        return Buffer.from(await this.tee.enrol(req.payload));
      case TEE_REQUEST_TOPICS.rotate:
        return Buffer.from(await this.tee.rotate(req.payload));
      case TEE_REQUEST_TOPICS.policy:
        await this.tee.loadPolicy(req.payload);
        return Buffer.from(String((await this.tee.info()).policySerial));
      case TEE_REQUEST_TOPICS.revoke:
        await this.tee.revoke(req.payload);
        return Buffer.alloc(0);
      case TEE_REQUEST_TOPICS.endorse:
        await this.tee.setEndorsement(req.payload);
        return Buffer.alloc(0);
      case TEE_REQUEST_TOPICS.mode:
        await this.tee.changeMode(req.payload);
        return Buffer.from((await this.tee.info()).fingerprint);
      case TEE_REQUEST_TOPICS.operator:
        await this.tee.changeOperator(req.payload);
        return Buffer.from((await this.tee.info()).fingerprint);
      default:
        throw new TeeError('unknown-command', `no trusted command behind ${req.topic}`);
    }
  }
}
