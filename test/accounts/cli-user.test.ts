import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { Command } from 'commander';
import { registerUser } from '../../src/cli/user.ts';
import { writeProfile } from '../../src/cli/profile.ts';
import { AppError } from '../../src/core/errors.ts';
import { snapshotTables } from '../helpers/db.ts';
import { startTestOrigin, type TestOrigin } from '../helpers/origin.ts';
import { runCli } from '../helpers/processes.ts';

// Issue 12 #2: accounts from the CLI alone. Operators add accounts and set roles; anyone
// changes their own password; `login` checks the origin answers before asking for one.

describe('cascade user, signup and login', () => {
  let origin: TestOrigin;
  let home: string;
  let previous: { home?: string; password?: string };

  before(async () => {
    origin = await startTestOrigin();
    home = mkdtempSync(path.join(os.tmpdir(), 'cascade-user-'));
    previous = { home: process.env.CASCADE_HOME, password: process.env.CASCADE_PASSWORD };
    process.env.CASCADE_HOME = home;
  });
  after(async () => {
    await origin?.close();
    for (const [k, v] of [['CASCADE_HOME', previous.home], ['CASCADE_PASSWORD', previous.password]] as const) {
      if (v === undefined) delete process.env[k];
      else process.env[k] = v;
    }
    if (home) rmSync(home, { recursive: true, force: true });
  });

  /** `cascade user …` in-process as `token`; the new password, where asked, from $CASCADE_PASSWORD. */
  async function user(token: string, args: string[], password?: string): Promise<unknown> {
    writeProfile({ origin: origin.url, token, username: 'x', originKey: origin.keys.publicKeyB64 });
    if (password === undefined) delete process.env.CASCADE_PASSWORD;
    else process.env.CASCADE_PASSWORD = password;
    const program = new Command('cascade').option('--origin <url>').option('--json').exitOverride();
    registerUser(program);
    const write = process.stdout.write;
    process.stdout.write = ((chunk: unknown, ...rest: unknown[]) => (typeof chunk === 'string' ? true : (write as Function).call(process.stdout, chunk, ...rest))) as typeof process.stdout.write;
    try {
      await program.parseAsync(['user', ...args], { from: 'user' });
      return null;
    } catch (err) {
      return err;
    } finally {
      process.stdout.write = write;
    }
  }
  const codeOf = (err: unknown) => (err instanceof AppError ? err.code : String(err));

  test('an operator adds accounts with roles and changes their roles; a stranger is refused and nothing changes', async () => {
    const op = await origin.userWithRoles(['operator']);
    assert.equal(await user(op.token, ['add', 'shop-1', '--role', 'store,publisher'], 'shop-1-long-password'), null);
    const [shop] = (await origin.accounts.listUsers({ limit: 1, username: 'shop-1' })).items;
    assert.deepEqual(shop.roles, ['store', 'publisher']);
    assert.equal(await user(op.token, ['roles', 'shop-1', '--add', 'premium', '--remove', 'publisher']), null);
    assert.deepEqual((await origin.accounts.getUser(shop.id)).roles, ['store', 'premium']);

    const stranger = await origin.userWithRoles(['publisher', 'store', 'premium', 'member']);
    const before = await snapshotTables(origin.db.db);
    assert.equal(codeOf(await user(stranger.token, ['add', 'sneaky', '--role', 'operator'], 'sneaky-long-password')), 'forbidden');
    assert.equal(codeOf(await user(stranger.token, ['roles', 'shop-1', '--set', 'operator'])), 'forbidden');
    assert.equal(codeOf(await user(stranger.token, ['passwd', 'shop-1'], 'taken-over-password')), 'forbidden');
    assert.equal(codeOf(await user(op.token, ['roles', 'nobody-here', '--add', 'store'])), 'unknown_user');
    assert.equal(codeOf(await user(op.token, ['roles', 'shop-1', '--remove', 'store,premium'])), 'invalid_role');
    assert.equal(codeOf(await user(op.token, ['add', 'weakling'], 'short')), 'weak_password');
    assert.equal(codeOf(await user(op.token, ['add', 'x', '--role', 'king'], 'long-enough-password')), 'invalid_argument');
    assert.deepEqual(await snapshotTables(origin.db.db), before, 'nothing changed');

    assert.equal(await user(op.token, ['passwd', 'shop-1'], 'reset-long-password'), null);
    assert.equal((await origin.call('POST', '/auth/login', { json: { username: 'shop-1', password: 'reset-long-password' } })).status, 200);
  });

  test('signup and passwd as processes: answers read from standard input, a wrong current password changes nothing', async () => {
    delete process.env.CASCADE_PASSWORD; // the processes read standard input
    const h = path.join(home, 'dana');
    const signup = await runCli(['--origin', origin.url, 'signup', '--username', 'dana'], { home: h, input: 'dana-first-password\n' });
    assert.equal(signup.code, 0, signup.stderr);
    assert.match(signup.stdout, /signed up and signed in to .* as dana \(member\)/);
    assert.doesNotMatch(signup.stderr + signup.stdout, /dana-first-password/, 'the password is not echoed');

    const before = await snapshotTables(origin.db.db);
    const wrong = await runCli(['--json', 'user', 'passwd'], { home: h, input: 'not-the-password\ndana-second-password\n' });
    assert.equal(wrong.code, 1);
    assert.equal(JSON.parse(wrong.stdout).error.code, 'bad_credentials');
    assert.deepEqual(await snapshotTables(origin.db.db), before, 'nothing changed');

    const ok = await runCli(['user', 'passwd'], { home: h, input: 'dana-first-password\ndana-second-password\n' });
    assert.equal(ok.code, 0, ok.stderr);
    assert.equal((await origin.call('POST', '/auth/login', { json: { username: 'dana', password: 'dana-second-password' } })).status, 200);
  });

  test('login checks the origin answers before asking for a password', async () => {
    delete process.env.CASCADE_PASSWORD;
    // A port nobody listens on: bound, then closed.
    const port = await new Promise<number>((resolve) => {
      const s = createServer().listen(0, '127.0.0.1', () => {
        const p = (s.address() as { port: number }).port;
        s.close(() => resolve(p));
      });
    });
    const res = await runCli(['--origin', `http://127.0.0.1:${port}`, 'login'], { home: path.join(home, 'nobody'), input: 'someone\nsome-password\n' });
    assert.equal(res.code, 1);
    assert.match(res.stderr, /error \(origin_unreachable\): Cannot reach the origin at http:\/\/127\.0\.0\.1:\d+ \(ECONNREFUSED\)\. Is it running/);
    assert.doesNotMatch(res.stderr, /username:|password:/, 'nothing was asked');
  });
});
