import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Readable } from 'node:stream';
import { Command } from 'commander';
import { Api } from '../../src/core/http-client.ts';
import { registerCatalog } from '../../src/cli/catalog.ts';
import { resolveContentId } from '../../src/cli/content-id.ts';
import { registerGet } from '../../src/cli/get.ts';
import { writeProfile } from '../../src/cli/profile.ts';
import { AppError } from '../../src/core/errors.ts';
import { snapshotTables } from '../helpers/db.ts';
import { startTestOrigin, type TestOrigin } from '../helpers/origin.ts';
import { CLI } from '../helpers/processes.ts';

// Issue 12 #2: `cascade catalog` prints full content IDs; every command that takes a
// content ID takes a unique prefix of 8+ hex characters (resolved by the origin:
// GET /contents?idPrefix=); a closed pipe ends the CLI quietly; the web page shows full IDs.

describe('catalog and short content IDs', () => {
  let origin: TestOrigin;
  let home: string;
  let ids: string[];
  let previousHome: string | undefined;

  before(async () => {
    origin = await startTestOrigin();
    const pub = await origin.userWithRoles(['publisher']);
    ids = [];
    for (const [title, genre] of [['Harbour Lights', 'documentary'], ['Night Ferry', 'drama']]) {
      ids.push((await origin.content.publish({ id: pub.userId, username: pub.username }, { title, genre, price: 300 }, Readable.from([randomBytes(5000)]))).id);
    }
    home = mkdtempSync(path.join(os.tmpdir(), 'cascade-catalog-'));
    previousHome = process.env.CASCADE_HOME;
    process.env.CASCADE_HOME = home;
    const member = await origin.userWithRoles(['member']);
    writeProfile({ origin: origin.url, token: member.token, username: member.username, originKey: origin.keys.publicKeyB64 });
  });
  after(async () => {
    await origin?.close();
    if (previousHome === undefined) delete process.env.CASCADE_HOME;
    else process.env.CASCADE_HOME = previousHome;
    if (home) rmSync(home, { recursive: true, force: true });
  });

  /** Runs a command in-process; returns what it printed on stdout, or the error it threw. */
  async function cli(args: string[], register: (p: Command) => void): Promise<{ out: string; err?: unknown }> {
    const program = new Command('cascade').option('--origin <url>').option('--json').exitOverride();
    register(program);
    let out = '';
    const write = process.stdout.write;
    // Only the command's text: the test runner's own messages to its parent are buffers, and pass.
    process.stdout.write = ((chunk: unknown, ...rest: unknown[]) =>
      typeof chunk === 'string' ? ((out += chunk), true) : (write as Function).call(process.stdout, chunk, ...rest)) as typeof process.stdout.write;
    try {
      await program.parseAsync(['--origin', origin.url, ...args], { from: 'user' });
      return { out };
    } catch (err) {
      return { out, err };
    } finally {
      process.stdout.write = write;
    }
  }

  test('cascade catalog prints the full ID first, then title, genre, price and size; a query narrows it', async () => {
    const all = await cli(['catalog'], registerCatalog);
    assert.equal(all.err, undefined);
    const lines = all.out.trim().split('\n');
    assert.equal(lines.length, 2);
    assert.ok(lines.some((l) => new RegExp(`^${ids[1]}  Night Ferry +drama +300  4\\.9 KiB$`).test(l)), all.out);
    const one = await cli(['catalog', 'harbour'], registerCatalog);
    assert.match(one.out.trim(), new RegExp(`^${ids[0]}  Harbour Lights  documentary  300  4\\.9 KiB$`));
    const bad = await cli(['catalog', '--limit', '0'], registerCatalog);
    assert.ok(bad.err instanceof AppError && bad.err.code === 'invalid_argument');
  });

  test('GET /contents?idPrefix= finds a content by its first 8+ hex characters; a malformed prefix is refused', async () => {
    const found = await origin.call('GET', `/contents?idPrefix=${ids[0].slice(0, 8)}`);
    assert.deepEqual(found.body.items.map((i: any) => i.id), [ids[0]]);
    const none = await origin.call('GET', `/contents?idPrefix=${ids[0].slice(0, 8) === '00000000' ? '11111111' : '00000000'}`);
    assert.deepEqual(none.body.items, []);
    for (const bad of ['abc1234', 'ABCDEF12', 'abcdefgh', '%25%25%25%25%25%25%25%25']) {
      const res = await origin.call('GET', `/contents?idPrefix=${bad}`);
      assert.deepEqual([res.status, res.body.error.code], [400, 'invalid_content_id'], bad);
    }
  });

  test('resolveContentId: a full ID as is, a unique prefix to its ID; too short, unknown and ambiguous are refused with codes', async () => {
    const api = new Api(origin.url);
    assert.equal(await resolveContentId(api, ids[0]), ids[0]);
    assert.equal(await resolveContentId(api, ids[0].slice(0, 8)), ids[0]);
    assert.equal(await resolveContentId(api, ids[1].slice(0, 20).toUpperCase()), ids[1]);
    const refusal = async (p: Promise<unknown>) => {
      try {
        await p;
      } catch (err) {
        return err instanceof AppError ? `${err.code}/${err.status}` : String(err);
      }
      return 'accepted';
    };
    assert.equal(await refusal(resolveContentId(api, ids[0].slice(0, 7))), 'invalid_content_id/400');
    assert.equal(await refusal(resolveContentId(api, 'not-an-id')), 'invalid_content_id/400');
    const unknown = ids.some((id) => id.startsWith('0000000')) ? 'fffffffff' : '000000000';
    assert.equal(await refusal(resolveContentId(api, unknown)), 'unknown_content/404');
    // Two IDs sharing 8 characters cannot be made from real content (SHA-256): the origin's answer is stood in for.
    const twins = { get: async () => ({ items: [{ id: `abcdef12${'0'.repeat(56)}`, title: 'A' }, { id: `abcdef12${'1'.repeat(56)}`, title: 'B' }] }) } as unknown as Api;
    assert.equal(await refusal(resolveContentId(twins, 'abcdef12')), 'ambiguous_content_id/409');
  });

  test('cascade get with an unknown or malformed prefix is refused before anything is reserved or written', async () => {
    const before = await snapshotTables(origin.db.db);
    const cwd = process.cwd();
    process.chdir(home);
    try {
      const unknown = await cli(['get', ids.some((id) => id.startsWith('00000000')) ? 'ffffffff' : '00000000'], registerGet);
      assert.ok(unknown.err instanceof AppError && unknown.err.code === 'unknown_content', String(unknown.err));
      const short = await cli(['get', 'abc'], registerGet);
      assert.ok(short.err instanceof AppError && short.err.code === 'invalid_content_id', String(short.err));
    } finally {
      process.chdir(cwd);
    }
    assert.deepEqual(await snapshotTables(origin.db.db), before, 'nothing reserved, no terminal registered');
    assert.deepEqual(['00000000', 'ffffffff', 'abc'].filter((f) => existsSync(path.join(home, `${f}.part`))), []);
  });

  test('output to a closed pipe ends quietly with status 0 (cascade catalog | head -1)', async () => {
    const p = spawn(process.execPath, [CLI, '--origin', origin.url, 'catalog'], { env: { ...process.env, CASCADE_HOME: home }, stdio: ['ignore', 'pipe', 'pipe'] });
    p.stdout!.destroy(); // the reader is gone before anything is written
    let stderr = '';
    p.stderr!.on('data', (d) => (stderr += d));
    const code = await new Promise<number | null>((r) => p.on('exit', r));
    assert.equal(stderr, '');
    assert.equal(code, 0);
  });
});
