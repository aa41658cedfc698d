import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Readable } from 'node:stream';
import { Command } from 'commander';
import { Api } from '../../src/core/http-client.ts';
import { registerTerminal } from '../../src/cli/terminal.ts';
import { AppError } from '../../src/core/errors.ts';
import { deviceSession, loadOrCreateDeviceKey } from '../../src/terminals/device.ts';
import { SESSION_TTL_MS } from '../../src/terminals/service.ts';
import { startTestOrigin, type TestOrigin } from '../helpers/origin.ts';

// The device side of S1.2 (used by the CLI and the agent), and `cascade terminal`.
// Client code: one engine is enough; the origin side is covered on both in api.test.ts.

describe('device session and `cascade terminal`', () => {
  let o: TestOrigin;
  let account: { token: string; userId: string; username: string };
  const homes: string[] = [];
  const newHome = () => {
    const h = mkdtempSync(path.join(os.tmpdir(), 'cascade-device-'));
    homes.push(h);
    return h;
  };

  before(async () => {
    o = await startTestOrigin();
    account = await o.userWithRoles(['member']);
  });
  after(async () => {
    await o.close();
    for (const h of homes) rmSync(h, { recursive: true, force: true });
  });

  test('the device key is created once, mode 0600, and reused', () => {
    const home = newHome();
    const a = loadOrCreateDeviceKey(home);
    assert.equal(statSync(path.join(home, 'device.key')).mode & 0o777, 0o600);
    assert.equal(loadOrCreateDeviceKey(home).publicKeyB64, a.publicKeyB64);
  });

  test('first call registers and logs in; later calls reuse the session until it nears expiry', async () => {
    const home = newHome();
    const api = new Api(o.url, account.token);
    const s1 = await deviceSession(api, home, { name: 'den', region: 'eu', clock: o.clock });
    const t = await o.terminals.get(s1.terminalId);
    assert.deepEqual([t.userId, t.name, t.region, t.publicKey], [account.userId, 'den', 'eu', s1.keys.publicKeyB64]);
    assert.equal((await o.accounts.resolveToken(s1.token))?.terminalId, s1.terminalId);
    assert.equal(statSync(path.join(home, 'device.json')).mode & 0o777, 0o600);

    const s2 = await deviceSession(api, home, { clock: o.clock });
    assert.equal(s2.token, s1.token, 'cached session reused');

    o.clock.advance(SESSION_TTL_MS - 60_000); // within the renewal margin
    const s3 = await deviceSession(api, home, { clock: o.clock });
    assert.notEqual(s3.token, s1.token, 'renewed before it lapses');
    assert.equal(s3.terminalId, s1.terminalId, 'same terminal, no second registration');
  });

  test('registering needs a signed-in account', async () => {
    await assert.rejects(deviceSession(new Api(o.url), newHome(), { clock: o.clock }), (e: any) => e instanceof AppError && e.code === 'not_signed_in');
  });

  test('a lost device.json with a registered key is a clear refusal, not a silent new identity', async () => {
    const home = newHome();
    const api = new Api(o.url, account.token);
    await deviceSession(api, home, { clock: o.clock });
    rmSync(path.join(home, 'device.json'));
    await assert.rejects(deviceSession(api, home, { clock: o.clock }), (e: any) => e instanceof AppError && e.code === 'device_credential_lost');
  });

  test('a credential the origin refuses is not retried forever', async () => {
    const home = newHome();
    const api = new Api(o.url, account.token);
    await deviceSession(api, home, { clock: o.clock });
    const file = path.join(home, 'device.json');
    const data = JSON.parse(readFileSync(file, 'utf8'));
    const entry = data.origins[o.url];
    entry.credential = entry.credential.replace(/\.[^.]+$/, '.AAAA');
    delete entry.session;
    writeFileSync(file, JSON.stringify(data));
    // Re-registration is tried once; the key is still registered, so it ends in a clear refusal.
    await assert.rejects(deviceSession(api, home, { clock: o.clock }), (e: any) => e instanceof AppError && e.code === 'device_credential_lost');
  });

  describe('CLI', () => {
    let home: string;
    const saved = { home: process.env.CASCADE_HOME, token: process.env.CASCADE_TOKEN };
    before(() => {
      home = newHome();
      process.env.CASCADE_HOME = home;
      process.env.CASCADE_TOKEN = account.token;
    });
    after(() => {
      for (const [k, v] of [['CASCADE_HOME', saved.home], ['CASCADE_TOKEN', saved.token]] as const) {
        if (v === undefined) delete process.env[k];
        else process.env[k] = v;
      }
    });

    async function cli(...args: string[]): Promise<string> {
      const program = new Command('cascade').option('--origin <url>').option('--json').exitOverride();
      registerTerminal(program);
      let output = '';
      const write = process.stdout.write;
      // Only text is ours: the test runner reports to its parent over stdout in binary.
      process.stdout.write = ((chunk: any, ...rest: any[]) =>
        typeof chunk === 'string' ? ((output += chunk), true) : write.call(process.stdout, chunk, ...rest)) as any;
      try {
        await program.parseAsync(['node', 'cascade', '--origin', o.url, ...args]);
      } finally {
        process.stdout.write = write;
      }
      return output;
    }

    test('terminal register, heartbeat, holders', async () => {
      const reg = JSON.parse(await cli('--json', 'terminal', 'register', '--name', 'cli box', '--region', 'ap'));
      assert.match(reg.terminalId, /^trm_/);
      assert.equal((await o.terminals.get(reg.terminalId)).region, 'ap');

      const hb = JSON.parse(await cli('--json', 'terminal', 'heartbeat', '--up-bps', '1000000'));
      assert.equal(hb.terminalId, reg.terminalId);
      assert.ok(hb.state.cpu >= 0 && hb.state.cpu <= 1);

      const pub = await o.userWithRoles(['publisher']);
      const { id } = await o.content.publish({ id: pub.userId, username: pub.username }, { title: 'x', genre: 'y', price: 0 }, Readable.from([randomBytes(100)]));
      await o.terminals.reportHoldings(reg.terminalId, [id], 'add');
      const holders = JSON.parse(await cli('--json', 'terminal', 'holders', id));
      assert.equal(holders.holders[0].terminalId, reg.terminalId);
      assert.equal(holders.holders[0].online, true);
      assert.equal(holders.holders[0].state.upBps, 1_000_000);
      const text = await cli('terminal', 'holders', id);
      assert.match(text, /^online +trm_\S+ +cli box +ap\/- +up 1\.0 Mbit\/s/);
    });
  });
});
