/** Public API of the package. */
export { Broker, type DeliveryStage, type Target } from './broker/broker.js';
export { startBroker, type RunningBroker, type StartOptions } from './server.js';
export { defaultConfig, parseConfig, loadConfigFile, ConfigError, type BrokerConfig, type AclRule, type Limits } from './config.js';
export type { AuthHooks, ClientInfo, Credentials, AuthenticateResult } from './auth/hooks.js';
export { AclAuth } from './auth/acl.js';
