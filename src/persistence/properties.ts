/** MQTT 5 message properties as stored text: JSON, with the one binary property in base64. */
import type { MessageProperties } from '../broker/message.js';

interface EncodedProperties extends Omit<MessageProperties, 'correlationData'> {
  correlationData?: string;
}

export function encodeProperties(p: MessageProperties | undefined): string | null {
  if (p === undefined) return null;
  const { correlationData, ...rest } = p;
  const out: EncodedProperties = correlationData === undefined ? rest : { ...rest, correlationData: correlationData.toString('base64') };
  return JSON.stringify(out);
}

export function decodeProperties(text: string | null): MessageProperties | undefined {
  if (text === null) return undefined;
  const { correlationData, ...rest } = JSON.parse(text) as EncodedProperties;
  return correlationData === undefined ? rest : { ...rest, correlationData: Buffer.from(correlationData, 'base64') };
}
