import assert from 'node:assert/strict';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import ts from 'typescript';

// ARCHITECTURE.md "Boundaries" (#12 point 6): a domain's tables.ts declares the tables it
// owns (OWNED_TABLES); no other code names them in a query builder call, a join or raw
// SQL; it asks the owner's service or an exported query function. `core` imports no domain.

const SRC = path.join(import.meta.dirname, '..', '..', 'src');

/** Kysely calls whose string arguments name tables. */
const TABLE_CALLS = new Set([
  'selectFrom', 'insertInto', 'updateTable', 'deleteFrom', 'mergeInto', 'replaceInto',
  'innerJoin', 'leftJoin', 'rightJoin', 'fullJoin', 'crossJoin', 'innerJoinLateral', 'leftJoinLateral', 'crossJoinLateral', 'using', 'table',
]);

export interface TableUse {
  table: string;
  line: number;
  how: string;
}

function files(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const p = path.join(dir, name);
    return statSync(p).isDirectory() ? files(p) : p.endsWith('.ts') ? [p] : [];
  });
}

/** Table names in raw SQL text: after from/join/into/update/table/using, and comma lists after from. */
function tablesInSql(text: string): string[] {
  const clean = text.toLowerCase().replace(/'(?:[^']|'')*'/g, "''").replace(/--[^\n]*/g, ' ');
  const found: string[] = [];
  const ident = String.raw`"?([a-z_][a-z0-9_]*)"?(?:\s*\.\s*"?([a-z_][a-z0-9_]*)"?)?`;
  for (const m of clean.matchAll(new RegExp(String.raw`\b(from|join|into|update|table|using)\s+(?:only\s+)?${ident}((?:\s+(?:as\s+)?[a-z_][a-z0-9_]*)?(?:\s*,\s*${ident}(?:\s+(?:as\s+)?[a-z_][a-z0-9_]*)?)*)`, 'g'))) {
    found.push(m[3] ?? m[2]);
    if (m[1] === 'from' && m[4]) {
      for (const more of m[4].matchAll(new RegExp(String.raw`,\s*${ident}`, 'g'))) found.push(more[2] ?? more[1]);
    }
  }
  return found;
}

/** Every table a source file names in a Kysely call or in an sql`…` template. */
export function tableUses(source: string, fileName = 'x.ts'): TableUse[] {
  const sf = ts.createSourceFile(fileName, source, ts.ScriptTarget.Latest, true);
  const uses: TableUse[] = [];
  const lineOf = (node: ts.Node) => sf.getLineAndCharacterOfPosition(node.getStart(sf)).line + 1;
  const fromLiteral = (node: ts.Node, how: string) => {
    if (ts.isStringLiteralLike(node)) uses.push({ table: node.text.trim().split(/\s+/)[0].split('.').pop()!, line: lineOf(node), how });
    else if (ts.isArrayLiteralExpression(node)) node.elements.forEach((e) => fromLiteral(e, how));
  };
  const visit = (node: ts.Node) => {
    if (ts.isCallExpression(node) && ts.isPropertyAccessExpression(node.expression) && TABLE_CALLS.has(node.expression.name.text) && node.arguments[0]) {
      const name = node.expression.name.text;
      // `sql.table('x')`, or a builder method; `.table` on anything else is not Kysely's.
      if (name !== 'table' || (ts.isIdentifier(node.expression.expression) && node.expression.expression.text === 'sql')) fromLiteral(node.arguments[0], name);
    }
    if (ts.isTaggedTemplateExpression(node) && ts.isIdentifier(node.tag) && node.tag.text === 'sql') {
      const t = node.template;
      const text = ts.isNoSubstitutionTemplateLiteral(t) ? t.text : [t.head.text, ...t.templateSpans.map((s) => s.literal.text)].join(' $ ');
      for (const table of tablesInSql(text)) uses.push({ table, line: lineOf(node), how: 'sql' });
    }
    ts.forEachChild(node, visit);
  };
  visit(sf);
  return uses;
}

/** Relative imports (static, re-exports and dynamic) of a source file. */
function importsOf(source: string): string[] {
  const sf = ts.createSourceFile('x.ts', source, ts.ScriptTarget.Latest, true);
  const found: string[] = [];
  const visit = (node: ts.Node) => {
    if ((ts.isImportDeclaration(node) || ts.isExportDeclaration(node)) && node.moduleSpecifier && ts.isStringLiteral(node.moduleSpecifier)) found.push(node.moduleSpecifier.text);
    if (ts.isCallExpression(node) && node.expression.kind === ts.SyntaxKind.ImportKeyword && node.arguments[0] && ts.isStringLiteral(node.arguments[0])) found.push(node.arguments[0].text);
    ts.forEachChild(node, visit);
  };
  visit(sf);
  return found;
}

/** The domains: folders of src/ whose tables.ts declares OWNED_TABLES. */
async function owners(): Promise<Map<string, string>> {
  const owner = new Map<string, string>();
  for (const dir of readdirSync(SRC)) {
    const tables = path.join(SRC, dir, 'tables.ts');
    if (!statSync(path.join(SRC, dir)).isDirectory() || !readdirSync(path.join(SRC, dir)).includes('tables.ts')) continue;
    const mod = await import(tables);
    assert.ok(Array.isArray(mod.OWNED_TABLES), `${dir}/tables.ts exports OWNED_TABLES`);
    for (const t of mod.OWNED_TABLES as string[]) {
      assert.equal(owner.get(t), undefined, `${t} is owned by both ${owner.get(t)} and ${dir}`);
      owner.set(t, dir);
    }
  }
  return owner;
}

const domainOf = (file: string) => {
  const rel = path.relative(SRC, file).split(path.sep);
  return rel.length > 1 ? rel[0] : rel[0].replace(/\.ts$/, '');
};

test('the scanner finds tables in builder calls, joins, arrays and raw SQL (it would catch a violation)', () => {
  const src = [
    "db.selectFrom('contents as c').innerJoin('users as u', 'u.id', 'c.publisher_id')",
    "trx.insertInto('ledger_accounts'); trx.updateTable('holdings'); trx.deleteFrom(['grants', 'receipts'])",
    "eb.selectFrom('terminals').leftJoin('transfers', 'a', 'b')",
    "sql`select x from peer_reputation r, schedules s join \"vouchers\" v on true where y in (select 1 from public.api_tokens)`",
    "sql<number>`update terminals set a = ${1} where b = 'from receipts'`",
    "sql`select count(*) as transfers from ledger_transfers`",
  ].join('\n');
  const found = tableUses(src).map((u) => u.table).sort();
  assert.deepEqual(found, ['api_tokens', 'contents', 'grants', 'holdings', 'ledger_accounts', 'ledger_transfers', 'peer_reputation', 'receipts', 'schedules', 'terminals', 'terminals', 'transfers', 'users', 'vouchers'].sort());
});

test('each domain’s tables.ts declares what its migrations create, and no table has two owners', async () => {
  const owner = await owners();
  assert.ok(owner.size >= 20, `only ${owner.size} owned tables found: is the scan still reading src/?`);
  const created = new Map<string, string>();
  for (const file of files(SRC).filter((f) => /\/tables[^/]*\.ts$/.test(f))) {
    // Kysely's createTable, or raw SQL (a table with an exclusion constraint, e.g. live_bookings).
    for (const m of readFileSync(file, 'utf8').matchAll(/\.createTable\(\s*'([a-z_]+)'|\bcreate table (?:if not exists )?([a-z_]+)/g)) created.set(m[1] ?? m[2], domainOf(file));
  }
  assert.deepEqual([...created].sort(), [...owner].sort());
});

test('no code names a table another domain owns (queries, joins, raw SQL)', async () => {
  const owner = await owners();
  const violations: string[] = [];
  let scanned = 0;
  for (const file of files(SRC)) {
    const home = domainOf(file);
    for (const use of tableUses(readFileSync(file, 'utf8'), file)) {
      scanned++;
      const own = owner.get(use.table);
      if (own && own !== home) violations.push(`${path.relative(SRC, file)}:${use.line} ${use.how} ${use.table} (owned by ${own})`);
    }
  }
  assert.ok(scanned >= 100, `only ${scanned} table uses found: is the scan still reading src/?`);
  assert.deepEqual(violations, []);
});

test('core imports no domain (only core and packages)', () => {
  const core = path.join(SRC, 'core');
  const violations = files(core).flatMap((file) =>
    importsOf(readFileSync(file, 'utf8'))
      .filter((spec) => spec.startsWith('.'))
      .filter((spec) => !path.resolve(path.dirname(file), spec).startsWith(core + path.sep))
      .map((spec) => `${path.relative(SRC, file)} imports ${spec}`),
  );
  assert.deepEqual(violations, []);
});
