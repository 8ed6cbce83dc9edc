// Bytes as MQTT.js wants them: a Buffer in Node (so payload.toString() works as with MQTT.js);
// browsers have no global Buffer, and MQTT.js's browser build sends any Uint8Array as is.

export function wire(bytes: Uint8Array): Buffer {
  return (typeof Buffer === 'function' ? Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength) : bytes) as Buffer;
}
