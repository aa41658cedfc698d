import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Command } from 'commander';
import { registerPublish } from '../../src/cli/publish.ts';
import { writeProfile } from '../../src/cli/profile.ts';
import { AppError } from '../../src/core/errors.ts';
import { startTestOrigin, type TestOrigin } from '../helpers/origin.ts';
import { CLI } from '../helpers/processes.ts';

// `cascade publish` (S1.1) as a user runs it: a child process, signed in through its profile.

const repo = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');

function cascade(args: string[], home: string): Promise<{ code: number; stdout: string; stderr: string }> {
  const env: NodeJS.ProcessEnv = { ...process.env, CASCADE_HOME: home };
  delete env.CASCADE_TOKEN;
  delete env.CASCADE_ORIGIN;
  return new Promise((resolve) => {
    execFile(process.execPath, [CLI, ...args], { env, cwd: repo }, (err, stdout, stderr) => {
      resolve({ code: err ? ((err as any).code ?? 1) : 0, stdout, stderr });
    });
  });
}

describe('cascade publish', { concurrency: true }, () => {
  let origin: TestOrigin;
  let home: string;
  let file: string;
  const bytes = randomBytes(300_000);

  before(async () => {
    origin = await startTestOrigin({ config: { pieceSize: 64 * 1024 } });
    const publisher = await origin.userWithRoles(['publisher']);
    home = mkdtempSync(path.join(os.tmpdir(), 'cascade-home-'));
    const previous = process.env.CASCADE_HOME;
    process.env.CASCADE_HOME = home;
    try {
      writeProfile({ origin: origin.url, token: publisher.token, username: publisher.username });
    } finally {
      if (previous === undefined) delete process.env.CASCADE_HOME;
      else process.env.CASCADE_HOME = previous;
    }
    file = path.join(home, 'concert.bin');
    writeFileSync(file, bytes);
  });
  after(async () => {
    await origin?.close();
    if (home) rmSync(home, { recursive: true, force: true });
  });

  test('prints the content ID on the last line; the catalog has it', async () => {
    const r = await cascade(['publish', file, '--title', 'Live at the Pier', '--genre', 'concert', '--price', '700', '--author', 'The Gulls'], home);
    assert.equal(r.code, 0, r.stderr);
    const id = r.stdout.trim().split('\n').at(-1)!;
    assert.match(id, /^[0-9a-f]{64}$/);
    const item = await origin.call('GET', `/contents/${id}`);
    assert.equal(item.status, 200);
    assert.equal(item.body.title, 'Live at the Pier');
    assert.equal(item.body.author, 'The Gulls');
    assert.equal(item.body.price, 700);
    assert.equal(item.body.totalSize, bytes.length);
    assert.equal(item.body.pieces, 5);
  });

  test('--json prints one JSON line', async () => {
    const r = await cascade(['--json', 'publish', file, '--title', 'Rehearsal', '--genre', 'concert', '--price', '0'], home);
    assert.equal(r.code, 0, r.stderr);
    const lines = r.stdout.trim().split('\n');
    assert.equal(lines.length, 1);
    const out = JSON.parse(lines[0]);
    assert.deepEqual(Object.keys(out).sort(), ['id', 'pieces', 'title', 'totalSize']);
    assert.equal(out.totalSize, bytes.length);
    assert.equal((await origin.call('GET', `/contents/${out.id}`)).body.title, 'Rehearsal');
  });

  test('a missing file is a clear error, before anything is sent', async () => {
    // In-process: the check comes before the profile or the network is touched.
    const program = new Command('cascade').option('--origin <url>').option('--json').exitOverride();
    registerPublish(program);
    await assert.rejects(
      program.parseAsync(['publish', path.join(home, 'nope.bin'), '--title', 'X', '--genre', 'y', '--price', '1'], { from: 'user' }),
      (err: unknown) => err instanceof AppError && err.code === 'file_not_found' && /nope\.bin/.test(err.message),
    );
  });
});
