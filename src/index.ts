/** Public API of the package. */
export { Broker, type DeliveryStage, type Target } from './broker/broker.js';
export { ROUTE, CONSUME, refuse, type BrokerExtension, type PublishDecision, type PublishingClient } from './broker/extension.js';
export type { RecipientPayloads, StageReceiver } from './broker/stage-runner.js';
export type { DeliveryLead } from './broker/message.js';
export { startBroker, type RunningBroker, type StartOptions } from './server.js';
export { defaultConfig, parseConfig, loadConfigFile, ConfigError, type BrokerConfig, type AclRule, type Limits } from './config.js';
export type { AuthHooks, ClientInfo, Credentials, AuthenticateResult } from './auth/hooks.js';
export { AclAuth } from './auth/acl.js';
export {
  connectProtected, ProtectedClient, fileKeyStore, memoryKeyStore, readKeyFile, writeKeyFile, KeyFileError, TeeRequestError,
  EnrolmentError, ProtectedMessageError, MalformedEnvelopeError, TamperedMessageError, ReplayedMessageError, WrongTopicError, NotForMeError,
  type NodeProtectedClientOptions, type ProtectedClientOptions, type ProtectedClientEvents, type MessageInfo, type KeyStore, type StoredKey,
} from './client/index.js';
