// Builds the web app (web/ -> dist/webapp) when the build is missing or older than a file of
// web/ or of the modules it shares with the server (src/core/units.ts). `npm test` runs it
// first, so the browser tests always see the app as it is in the tree.
import { existsSync, readdirSync, statSync } from 'node:fs';
import { spawnSync } from 'node:child_process';
import path from 'node:path';

const root = path.resolve(import.meta.dirname, '..');
const built = path.join(root, 'dist', 'webapp', 'index.html');

export function newest(p) {
  const s = statSync(p);
  if (!s.isDirectory()) return s.mtimeMs;
  return Math.max(s.mtimeMs, ...readdirSync(p).map((n) => newest(path.join(p, n))));
}

export function webBuildIsStale() {
  if (!existsSync(built)) return true;
  const sources = Math.max(newest(path.join(root, 'web')), newest(path.join(root, 'src', 'core', 'units.ts')));
  return sources > statSync(built).mtimeMs;
}

export function ensureWebBuilt() {
  if (!webBuildIsStale()) return;
  console.error('building the web app (web/ changed since dist/webapp was built)…');
  const res = spawnSync(process.execPath, [path.join(root, 'node_modules', 'vite', 'bin', 'vite.js'), 'build', '--config', path.join(root, 'web', 'vite.config.ts'), '--logLevel', 'warn'], { cwd: root, stdio: 'inherit' });
  if (res.status !== 0) throw new Error('the web app did not build (vite build failed above)');
}

if (import.meta.url === `file://${process.argv[1]}`) ensureWebBuilt();
