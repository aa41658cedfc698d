import { EventEmitter } from 'node:events';
import type { Codec, NatsConnection, Subscription } from 'nats';

// Cross-process events (presence, live segment announcements, cancellations).
// In one process an EventEmitter carries them; with NATS_URL set, NATS does, so
// several origin processes sharing one PostgreSQL see each other's events.

export type Handler = (data: unknown) => void;

export interface EventBus {
  publish(subject: string, data: unknown): void;
  /** Returns an unsubscribe function. */
  subscribe(subject: string, handler: Handler): () => void;
  close(): Promise<void>;
}

export class LocalEventBus implements EventBus {
  private readonly emitter = new EventEmitter().setMaxListeners(0);
  publish(subject: string, data: unknown) {
    this.emitter.emit(subject, data);
  }
  subscribe(subject: string, handler: Handler) {
    this.emitter.on(subject, handler);
    return () => void this.emitter.off(subject, handler);
  }
  async close() {
    this.emitter.removeAllListeners();
  }
}

export class NatsEventBus implements EventBus {
  private constructor(
    private readonly nc: NatsConnection,
    private readonly prefix: string,
    private readonly codec: Codec<unknown>,
  ) {}

  static async connect(url: string, prefix = 'cascade'): Promise<NatsEventBus> {
    // Loaded only when NATS is configured: most origins never need it (#12 point 1, start-up).
    const { connect, JSONCodec } = await import('nats');
    return new NatsEventBus(await connect({ servers: url, name: 'cascade-origin' }), prefix, JSONCodec());
  }
  publish(subject: string, data: unknown) {
    this.nc.publish(`${this.prefix}.${subject}`, this.codec.encode(data));
  }
  subscribe(subject: string, handler: Handler) {
    const sub: Subscription = this.nc.subscribe(`${this.prefix}.${subject}`);
    void (async () => {
      for await (const m of sub) handler(this.codec.decode(m.data));
    })();
    return () => sub.unsubscribe();
  }
  async flush() {
    await this.nc.flush();
  }
  async close() {
    await this.nc.drain();
  }
}

export async function openEventBus(natsUrl: string | undefined, prefix?: string): Promise<EventBus> {
  return natsUrl ? NatsEventBus.connect(natsUrl, prefix) : new LocalEventBus();
}
