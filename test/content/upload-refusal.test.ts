import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Command } from 'commander';
import { registerPublish } from '../../src/cli/publish.ts';
import { writeProfile } from '../../src/cli/profile.ts';
import { AppError } from '../../src/core/errors.ts';
import { spawnOrigin, type OriginProcess } from '../helpers/processes.ts';

// Issue 12 #5: a refused upload arrives as a refusal. The origin answers before reading the
// body (access rule in onRequest, declared size in onRequest) and keeps reading what is
// already on its way for a bounded while, so the answer is not lost to a reset; the CLI reads
// the answer even when the server stops reading its body. Real origin process on loopback,
// the CLI's own publish code path.

async function publishInProcess(file: string): Promise<unknown> {
  const program = new Command('cascade').option('--origin <url>').option('--json').exitOverride();
  registerPublish(program);
  try {
    await program.parseAsync(['--json', 'publish', file, '--title', 'Big', '--genre', 'test', '--price', '1'], { from: 'user' });
    return null;
  } catch (err) {
    return err;
  }
}

describe('refused uploads (issue 12 #5)', () => {
  let origin: OriginProcess;
  let home: string;
  let big: string;
  let previousHome: string | undefined;

  before(async () => {
    origin = await spawnOrigin({ env: { MAX_UPLOAD_BYTES: String(30 * 1024 * 1024) } });
    home = mkdtempSync(path.join(os.tmpdir(), 'cascade-refusal-'));
    previousHome = process.env.CASCADE_HOME;
    process.env.CASCADE_HOME = home;
    const signup = await fetch(`${origin.url}/users/signup`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ username: 'member-1', password: 'a long enough password' }) });
    assert.equal(signup.status, 201);
    const login = await fetch(`${origin.url}/auth/login`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ username: 'member-1', password: 'a long enough password' }) });
    const { token } = (await login.json()) as { token: string };
    writeProfile({ origin: origin.url, token, username: 'member-1' });
    big = path.join(home, 'big.bin');
    writeFileSync(big, Buffer.alloc(40 * 1024 * 1024, 7));
  });
  after(async () => {
    await origin?.destroy();
    if (previousHome === undefined) delete process.env.CASCADE_HOME;
    else process.env.CASCADE_HOME = previousHome;
    if (home) rmSync(home, { recursive: true, force: true });
  });

  const catalogSize = async () => ((await (await fetch(`${origin.url}/contents?limit=100`)).json()) as { items: unknown[] }).items.length;

  test('a member uploading 40 MB is told forbidden, 10 times out of 10, and nothing is published', async () => {
    const codes: string[] = [];
    for (let i = 0; i < 10; i++) {
      const err = await publishInProcess(big);
      codes.push(err instanceof AppError ? `${err.code}/${err.status}` : String(err));
    }
    assert.deepEqual(codes, Array(10).fill('forbidden/403'));
    assert.equal(await catalogSize(), 0);
  });

  test('a publisher uploading more than the cap is told upload_too_large, and nothing is published', async () => {
    const op = (await (await fetch(`${origin.url}/auth/login`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(origin.operator) })).json()) as { token: string };
    const made = await fetch(`${origin.url}/users`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${op.token}` },
      body: JSON.stringify({ username: 'pub-1', password: 'a long enough password', roles: ['publisher'] }),
    });
    assert.equal(made.status, 201);
    const login = (await (await fetch(`${origin.url}/auth/login`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ username: 'pub-1', password: 'a long enough password' }) })).json()) as { token: string };
    writeProfile({ origin: origin.url, token: login.token, username: 'pub-1' });
    const codes: string[] = [];
    for (let i = 0; i < 3; i++) {
      const err = await publishInProcess(big);
      codes.push(err instanceof AppError ? `${err.code}/${err.status}` : String(err));
    }
    assert.deepEqual(codes, Array(3).fill('upload_too_large/413'));
    assert.equal(await catalogSize(), 0);
  });
});
