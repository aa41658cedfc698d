import { readFileSync, readdirSync, statSync } from 'node:fs';
import path from 'node:path';

// The error codes docs/errors.md lists, and the ones the source uses ("every code used
// must be listed in docs/errors.md"). Shared by test/core/error-codes.test.ts and the fuzz test.

const ROOT = path.resolve(import.meta.dirname, '../..');

/** Whether docs/errors.md lists `code`, directly or by a family such as `grant_*`. */
export function documentedCodes(): (code: string) => boolean {
  const text = readFileSync(path.join(ROOT, 'docs/errors.md'), 'utf8');
  const listed = new Set<string>();
  const families: string[] = [];
  for (const [, token] of text.matchAll(/`([a-z][a-z0-9_]*\*?)`/g)) {
    if (token.endsWith('*')) families.push(token.slice(0, -1));
    else listed.add(token);
  }
  return (code) => listed.has(code) || families.some((f) => code.startsWith(f));
}

function sourceFiles(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const p = path.join(dir, name);
    return statSync(p).isDirectory() ? sourceFiles(p) : p.endsWith('.ts') ? [p] : [];
  });
}

/**
 * Every literal error code in src/: the first argument of `new AppError(…)` and of the
 * helpers in src/core/errors.ts, `code: '…'` in results that carry one, and the keys of
 * the refusal tables (`*_REFUSALS`, `REFUSAL_MESSAGES`). Codes built at run time
 * (`invalid_${field}`) are not seen here; the fuzz test checks those as they happen.
 */
export function codesUsedInSource(): Map<string, string> {
  const found = new Map<string, string>();
  for (const file of sourceFiles(path.join(ROOT, 'src'))) {
    const text = readFileSync(file, 'utf8');
    const rel = path.relative(ROOT, file);
    const add = (code: string) => found.has(code) || found.set(code, rel);
    for (const m of text.matchAll(/\b(?:new AppError|badRequest|unauthorized|forbidden|notFound|conflict)\(\s*['`]([a-z][a-z0-9_]*)['`]/g)) add(m[1]);
    for (const m of text.matchAll(/\bcode: '([a-z][a-z0-9_]*)'/g)) add(m[1]);
    for (const table of text.matchAll(/(?:_REFUSALS|REFUSAL_MESSAGES)\b[^=]*=\s*\{([\s\S]*?)\n\}/g)) {
      for (const m of table[1].matchAll(/^\s*([a-z][a-z0-9_]*):/gm)) add(m[1]);
    }
  }
  return found;
}
