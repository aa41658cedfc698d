import pino, { type Logger } from 'pino';

// Structured JSON logs (pino). Secrets never go in here: tokens and passwords are not logged.
export function createLogger(level = 'info', name = 'cascade'): Logger {
  return pino({ level, name, redact: ['req.headers.authorization', '*.password', '*.token'] });
}
