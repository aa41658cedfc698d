import { AppError } from '../core/errors.ts';
import type { Api } from '../core/http-client.ts';

// Issue 12 #2: wherever the CLI takes a content ID it also takes a unique prefix of at
// least 8 hex characters, as git takes short commit IDs. The origin resolves it
// (`GET /contents?idPrefix=`): the CLI cannot see the whole catalog, and asking for two
// matches is enough to tell unique from ambiguous.

const FULL = /^[0-9a-f]{64}$/;
const PREFIX = /^[0-9a-f]{8,63}$/;

export async function resolveContentId(api: Api, input: string): Promise<string> {
  const id = input.trim().toLowerCase();
  if (FULL.test(id)) return id;
  if (!PREFIX.test(id)) {
    throw new AppError('invalid_content_id', `"${input}" is not a content ID: give its 64 hexadecimal characters, or at least the first 8 (\`cascade catalog\` lists them).`, 400);
  }
  const { items } = await api.get<{ items: { id: string; title: string }[] }>(`/contents?idPrefix=${id}&limit=2`);
  if (items.length === 0) throw new AppError('unknown_content', `No content ID starts with ${id} (\`cascade catalog\` lists them).`, 404);
  if (items.length > 1) {
    const candidates = items.map((i) => `${i.id} "${i.title}"`).join(', ');
    throw new AppError('ambiguous_content_id', `More than one content ID starts with ${id} (${candidates}): give more characters.`, 409, { candidates: items.map((i) => i.id) });
  }
  return items[0].id;
}
