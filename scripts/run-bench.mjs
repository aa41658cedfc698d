// `npm run bench -- NAME` runs bench/NAME.ts; its last output line is one JSON object.
import { spawnSync } from 'node:child_process';
import { existsSync, readdirSync } from 'node:fs';

const [name, ...rest] = process.argv.slice(2);
const file = `bench/${name}.ts`;
if (!name || !existsSync(file)) {
  const known = readdirSync('bench').filter((f) => f.endsWith('.ts') && !f.startsWith('_')).map((f) => f.slice(0, -3));
  console.error(`usage: npm run bench -- NAME   (one of: ${known.join(', ')})`);
  process.exit(2);
}
const res = spawnSync(process.execPath, ['--import', 'tsx', file, ...rest], { stdio: 'inherit' });
process.exit(res.status ?? 1);
