import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { LocalEventBus, NatsEventBus, type EventBus } from '../../src/core/event-bus.ts';

// Events between origin processes: in-process by default, NATS when NATS_URL is set.

async function roundTrip(a: EventBus, b: EventBus, flush: () => Promise<void>) {
  const got: unknown[] = [];
  const off = b.subscribe('presence', (d) => got.push(d));
  await flush();
  a.publish('presence', { terminal: 'trm_1', online: true });
  await flush();
  for (let i = 0; i < 50 && got.length === 0; i++) await new Promise((r) => setImmediate(r));
  off();
  a.publish('presence', { terminal: 'trm_1', online: false });
  await flush();
  return got;
}

test('the local bus delivers to subscribers until they unsubscribe', async () => {
  const bus = new LocalEventBus();
  assert.deepEqual(await roundTrip(bus, bus, async () => {}), [{ terminal: 'trm_1', online: true }]);
  await bus.close();
});

test('two NATS buses (two origin processes) see each other’s events', { skip: !process.env.NATS_URL && 'NATS_URL not set' }, async () => {
  const prefix = `cascade-test-${randomBytes(4).toString('hex')}`;
  const a = await NatsEventBus.connect(process.env.NATS_URL!, prefix);
  const b = await NatsEventBus.connect(process.env.NATS_URL!, prefix);
  try {
    const got = await roundTrip(a, b, async () => {
      await a.flush();
      await b.flush();
    });
    assert.deepEqual(got, [{ terminal: 'trm_1', online: true }]);
  } finally {
    await a.close();
    await b.close();
  }
});
