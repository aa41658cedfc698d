#!/usr/bin/env node
// The `cascade` CLI run from the TypeScript source through tsx, for tests and development:
// what they run is always the source as it is, never a dist/ built before an edit.
// Users run bin/cascade.js, the compiled CLI.
import { register } from 'tsx/esm/api';
register();
await import('../src/cli/main.ts');
