import { once } from 'node:events';
import type { AddressInfo } from 'node:net';
import { simpleParser, type ParsedMail } from 'mailparser';
import { SMTPServer } from 'smtp-server';

// A real SMTP server on loopback for the mail tests (S3.8): it takes every message (or refuses
// them while `refuse` is set) and keeps each one parsed, with its envelope.

export interface SmtpReceiver {
  url: string;
  /** Messages taken, parsed, in arrival order. */
  messages: (ParsedMail & { envelopeTo: string[] })[];
  /** While set, every recipient is refused with this SMTP answer text (code 550). */
  refuse: string | null;
  close(): Promise<void>;
}

export async function startSmtpReceiver(): Promise<SmtpReceiver> {
  const receiver: SmtpReceiver = { url: '', messages: [], refuse: null, close: async () => {} };
  const server = new SMTPServer({
    authOptional: true,
    disabledCommands: ['STARTTLS'],
    logger: false,
    onRcptTo(_address, _session, callback) {
      if (receiver.refuse === null) return callback();
      const err = Object.assign(new Error(receiver.refuse), { responseCode: 550 });
      callback(err);
    },
    onData(stream, session, callback) {
      simpleParser(stream).then(
        (parsed) => {
          receiver.messages.push(Object.assign(parsed, { envelopeTo: session.envelope.rcptTo.map((r) => r.address) }));
          callback();
        },
        (err) => callback(err),
      );
    },
  });
  server.on('error', () => {}); // a client that goes away mid-conversation is not the test's business
  const net = server.listen(0, '127.0.0.1');
  await once(net, 'listening');
  receiver.url = `smtp://127.0.0.1:${(net.address() as AddressInfo).port}`;
  receiver.close = () => new Promise<void>((resolve) => server.close(() => resolve()));
  return receiver;
}
