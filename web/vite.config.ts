import { defineConfig } from 'vite';
import preact from '@preact/preset-vite';
import path from 'node:path';

// The web app (#13), built by `npm run build` into dist/webapp, which the origin serves at /
// (src/web/routes.ts). Hashed file names under /assets/ let the origin cache them for a year.
export default defineConfig({
  root: import.meta.dirname,
  base: '/',
  plugins: [preact()],
  build: {
    outDir: path.resolve(import.meta.dirname, '../dist/webapp'),
    emptyOutDir: true,
    assetsDir: 'assets',
    sourcemap: true,
    chunkSizeWarningLimit: 400,
  },
  server: {
    // `npx vite web` during development: the API is the origin on 8080.
    proxy: Object.fromEntries(
      ['/auth', '/users', '/contents', '/me', '/wallet', '/vouchers', '/terminals', '/grants', '/pieces', '/receipts', '/schedules', '/publishers', '/payouts', '/ops', '/health', '/plays', '/ledger'].map((p) => [p, 'http://127.0.0.1:8080']),
    ),
  },
});
