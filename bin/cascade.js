#!/usr/bin/env -S node --max-semi-space-size=8
// Runs the compiled CLI in dist/ (built by `npm run build`, which `npm install` runs as `prepare`):
// compiling TypeScript on every command cost seconds (#12 point 1). Tests and development run
// the TypeScript source instead (scripts/cascade-src.mjs, `npm run cascade`).
// --max-semi-space-size=8 (also in `npm start`): V8's young generation at 8 MB per half instead
// of 16, about 12 MB less resident for an idle origin (#19 point 5; docs/operations.md).
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

const main = new URL('../dist/cli/main.js', import.meta.url);
if (!existsSync(main)) {
  process.stderr.write(`cascade is not built (no dist/): run \`npm run build\` in ${fileURLToPath(new URL('..', import.meta.url))}\n`);
  process.exit(1);
}
await import(main.href);
