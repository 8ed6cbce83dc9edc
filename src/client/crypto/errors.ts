// Every way a protected message or an enrolment can fail has its own class and stable `code`,
// so applications (and the SDK's error events) can tell a tampering broker from a replay.
import type { TeeErrorCode } from '../../envelope/errors.js';

export type MessageErrorCode = 'malformed' | 'tampered' | 'replayed' | 'wrong-topic' | 'not-for-me';

export class ProtectedMessageError extends Error {
  constructor(readonly code: MessageErrorCode, message: string) {
    super(message);
    this.name = 'ProtectedMessageError';
  }
}

/** The bytes do not follow the envelope layout (or use an unknown version). */
export class MalformedEnvelopeError extends ProtectedMessageError {
  constructor(message: string) {
    super('malformed', message);
    this.name = 'MalformedEnvelopeError';
  }
}

/** Authentication failed: header, payload, sender, sequence number or topic were altered. */
export class TamperedMessageError extends ProtectedMessageError {
  constructor(message: string) {
    super('tampered', message);
    this.name = 'TamperedMessageError';
  }
}

/** Authentic, but this (sender, sequence number) was already accepted or is older than the window. */
export class ReplayedMessageError extends ProtectedMessageError {
  constructor(message: string) {
    super('replayed', message);
    this.name = 'ReplayedMessageError';
  }
}

/** The header was made for another topic than the one it arrived on. */
export class WrongTopicError extends ProtectedMessageError {
  constructor(message: string) {
    super('wrong-topic', message);
    this.name = 'WrongTopicError';
  }
}

/** The header was re-wrapped for another identity (or not re-wrapped at all). */
export class NotForMeError extends ProtectedMessageError {
  constructor(message: string) {
    super('not-for-me', message);
    this.name = 'NotForMeError';
  }
}

export type EnrolmentErrorCode = 'fingerprint-mismatch' | 'endorsement-invalid' | 'open-enrolment-refused' | 'benchmark-build-refused' | 'bad-response' | 'bad-signature' | 'bad-confirmation' | 'refused';

export class EnrolmentError extends Error {
  constructor(readonly code: EnrolmentErrorCode, message: string, readonly refusal?: TeeErrorCode) {
    super(message);
    this.name = 'EnrolmentError';
  }
}
