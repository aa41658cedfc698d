import assert from 'node:assert/strict';
import { test } from 'node:test';
import { codesUsedInSource, documentedCodes } from '../helpers/error-codes.ts';

// "Every code used must be listed in docs/errors.md": each literal error code in src/
// (AppError and its helpers, `code: '…'` results, the refusal tables) is listed there.

test('every error code the source uses is listed in docs/errors.md', () => {
  const isDocumented = documentedCodes();
  const used = codesUsedInSource();
  assert.ok(used.size >= 100, `only ${used.size} codes found: is the scan still reading src/?`);
  const missing = [...used].filter(([code]) => !isDocumented(code)).map(([code, file]) => `${code} (${file})`);
  assert.deepEqual(missing, []);
});
