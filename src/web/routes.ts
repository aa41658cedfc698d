import type { FastifyPluginAsync } from 'fastify';

// The browser front page: the catalog with search, and links for operators.
// It reads the same public API as every other client.
const page = `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>Cascade</title>
<style>
 body{font:15px/1.5 system-ui,sans-serif;margin:2rem auto;max-width:60rem;padding:0 1rem;color:#1d2330}
 header{display:flex;gap:1rem;align-items:baseline} header nav{margin-left:auto;display:flex;gap:1rem}
 input{font:inherit;padding:.4rem .6rem;width:20rem} table{border-collapse:collapse;width:100%;margin-top:1rem}
 td,th{text-align:left;padding:.35rem .5rem;border-bottom:1px solid #dde} code{font-size:.85em}
 #more{margin-top:1rem} .muted{color:#667} code.id{word-break:break-all;user-select:all}
</style></head><body>
<header><h1>Cascade</h1><span class="muted">content distribution</span>
<nav><a href="/docs">API (OpenAPI)</a><a href="/health">health</a><a href="/metrics">metrics</a></nav></header>
<form id="search"><input id="q" type="search" placeholder="Search title, genre or publisher" aria-label="search"> <button>Search</button></form>
<table><thead><tr><th>Title</th><th>Genre</th><th>Publisher</th><th>Size</th><th>Price</th><th>Content ID</th></tr></thead><tbody id="rows"></tbody></table>
<p id="empty" class="muted" hidden>Nothing published yet. Publish with <code>cascade publish FILE --title … --genre … --price …</code>.</p>
<button id="more" hidden>More</button>
<script>
let cursor = null;
const rows = document.getElementById('rows');
const mib = (n) => (n / 1048576).toFixed(1) + ' MiB';
async function load(reset) {
  const q = document.getElementById('q').value.trim();
  const params = new URLSearchParams({ limit: '20' });
  if (q) params.set('q', q);
  if (!reset && cursor) params.set('cursor', cursor);
  const res = await fetch('/contents?' + params);
  const data = await res.json();
  if (reset) rows.textContent = '';
  for (const c of data.items) {
    const tr = document.createElement('tr');
    for (const v of [c.title, c.genre, c.publisher, mib(c.totalSize), c.price]) {
      const td = document.createElement('td'); td.textContent = v; tr.appendChild(td);
    }
    // The full ID, as \`cascade get\` takes it (issue 12 #2); selectable in one click.
    const id = document.createElement('code'); id.className = 'id'; id.textContent = c.id;
    const td = document.createElement('td'); td.appendChild(id); tr.appendChild(td);
    rows.appendChild(tr);
  }
  cursor = data.nextCursor;
  document.getElementById('more').hidden = !cursor;
  document.getElementById('empty').hidden = rows.children.length > 0;
}
document.getElementById('search').onsubmit = (e) => { e.preventDefault(); load(true); };
document.getElementById('more').onclick = () => load(false);
load(true);
</script></body></html>`;

export const webRoutes: FastifyPluginAsync = async (app) => {
  app.get('/', { config: { access: 'public' }, schema: { summary: 'Web UI: the catalog', tags: ['web'] } }, async (_req, reply) => {
    reply.type('text/html; charset=utf-8').send(page);
  });
};
