#!/usr/bin/env node
// Runs the compiled CLI in dist/ (built by `npm run build`, which `npm install` runs as `prepare`):
// compiling TypeScript on every command cost seconds (#12 point 1). Tests and development run
// the TypeScript source instead (scripts/cascade-src.mjs, `npm run cascade`).
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

const main = new URL('../dist/cli/main.js', import.meta.url);
if (!existsSync(main)) {
  process.stderr.write(`cascade is not built (no dist/): run \`npm run build\` in ${fileURLToPath(new URL('..', import.meta.url))}\n`);
  process.exit(1);
}
await import(main.href);
