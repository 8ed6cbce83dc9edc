/**
 * A protected recipient's lead: the part of its envelope before the ciphertext all recipients
 * share, `u16 length || shared || own` (the header's length, then the header: the part the
 * message's recipients share, ending with the group id, then the recipient's own member part).
 * Only this module knows that layout; the broker writes a lead through `DeliveryLead`.
 */
import { ownBytes, type DeliveryLead } from '../broker/message.js';

export class ProtectedLead implements DeliveryLead {
  constructor(
    /** A view of the trusted component's answer, the same for every recipient of the message. */
    readonly shared: Uint8Array,
    /** The recipient's member part, formed once with its group. */
    readonly own: Uint8Array,
  ) {}

  get byteLength(): number {
    return 2 + this.shared.length + this.own.length;
  }

  writeTo(out: Uint8Array, at: number): void {
    const length = this.shared.length + this.own.length;
    out[at] = length >> 8;
    out[at + 1] = length & 0xff;
    out.set(this.shared, at + 2);
    out.set(this.own, at + 2 + this.shared.length);
  }

  /** The shared part is a view of a pipe read (~100 bytes of it per recipient): kept, it gets memory of its own. */
  settled(): DeliveryLead {
    const shared = ownBytes(this.shared);
    return shared === this.shared ? this : new ProtectedLead(shared, this.own);
  }
}
