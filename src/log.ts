/**
 * Structured logs (pino) to stderr, so stdout stays free for command output: readable lines
 * (pino-pretty) when stderr is a terminal, one JSON object per line otherwise (files, journald,
 * log shippers). MQT_TZ_LOG_FORMAT=json or pretty overrides the choice.
 */
import { pino, type Logger } from 'pino';
import pretty from 'pino-pretty';

export type { Logger };

export type LogFormat = 'json' | 'pretty';

export function logFormat(env: NodeJS.ProcessEnv = process.env, terminal = process.stderr.isTTY === true): LogFormat {
  const wanted = env.MQT_TZ_LOG_FORMAT;
  if (wanted === 'json' || wanted === 'pretty') return wanted;
  return terminal ? 'pretty' : 'json';
}

export function createLogger(level: string, name = 'mqt-tz', format: LogFormat = logFormat()): Logger {
  if (format === 'json') return pino({ name, level }, pino.destination(2));
  // synchronous: lines keep their order with the process's other output and survive process.exit
  return pino({ name, level }, pretty({ destination: 2, sync: true, colorize: process.stderr.isTTY === true, translateTime: 'SYS:HH:MM:ss.l', ignore: 'pid,hostname', singleLine: true }));
}
