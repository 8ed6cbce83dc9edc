/**
 * Errors the broker core throws between its modules. Kept apart from connection.ts so that packet
 * handlers can throw them without importing the connection at run time (the handlers are imported
 * by it: connection.ts -> handlers/dispatch.ts -> handlers/*).
 */

/** Thrown by handlers for protocol violations: the connection is closed with `reason`. */
export class ProtocolViolation extends Error {
  constructor(readonly reason: number, message: string) {
    super(message);
  }
}
