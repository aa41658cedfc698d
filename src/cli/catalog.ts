import type { Command } from 'commander';
import { apiFromProfile } from './profile.ts';
import { AppError } from '../core/errors.ts';

// `cascade catalog [QUERY]` (issue 12 #2): the catalog with full content IDs, the ones
// `cascade get` takes (any unique 8+ character prefix of them works too).

interface Item {
  id: string;
  title: string;
  genre: string;
  price: number;
  totalSize: number;
  publisher: string;
}

export function registerCatalog(program: Command) {
  program
    .command('catalog')
    .description('list published contents, newest first: full ID, title, genre, price, size')
    .argument('[query]', 'part of a title, genre or publisher name')
    .option('--genre <genre>', 'only this genre')
    .option('--publisher <name>', 'only this publisher')
    .option('--limit <n>', 'how many (1–100)', '20')
    .option('--cursor <cursor>', 'the next page (printed after a full page)')
    .action(async (query: string | undefined, opts: { genre?: string; publisher?: string; limit: string; cursor?: string }) => {
      const g = program.opts();
      if (!/^\d+$/.test(opts.limit) || Number(opts.limit) < 1 || Number(opts.limit) > 100) {
        throw new AppError('invalid_argument', `--limit is a whole number from 1 to 100, got "${opts.limit}".`);
      }
      const params = new URLSearchParams({ limit: opts.limit });
      if (query) params.set('q', query);
      if (opts.genre) params.set('genre', opts.genre);
      if (opts.publisher) params.set('publisher', opts.publisher);
      if (opts.cursor) params.set('cursor', opts.cursor);
      const page = await apiFromProfile({ origin: g.origin }).get<{ items: Item[]; nextCursor: string | null }>(`/contents?${params}`);
      if (g.json) return void process.stdout.write(JSON.stringify(page) + '\n');
      if (page.items.length === 0) return void process.stderr.write(query ? `nothing matches "${query}"\n` : 'nothing published yet\n');
      for (const line of formatCatalog(page.items)) process.stdout.write(line + '\n');
      if (page.nextCursor) process.stderr.write(`more: add --cursor ${page.nextCursor}\n`);
    });
}

/** One line per content: the full ID first (to copy), then title, genre, price in minor units, size. */
export function formatCatalog(items: Item[]): string[] {
  const width = (f: (i: Item) => string) => Math.max(...items.map((i) => f(i).length));
  const title = width((i) => i.title);
  const genre = width((i) => i.genre);
  const price = width((i) => String(i.price));
  return items.map((i) => `${i.id}  ${i.title.padEnd(title)}  ${i.genre.padEnd(genre)}  ${String(i.price).padStart(price)}  ${size(i.totalSize)}`);
}

function size(bytes: number): string {
  if (bytes < 1024) return `${bytes} B`;
  const units = ['KiB', 'MiB', 'GiB', 'TiB'];
  let n = bytes / 1024;
  let u = 0;
  while (n >= 1024 && u < units.length - 1) {
    n /= 1024;
    u++;
  }
  return `${n.toFixed(1)} ${units[u]}`;
}
