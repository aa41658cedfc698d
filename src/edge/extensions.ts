import { homeExtension } from './home/extension.ts';
import type { EdgeContext, EdgeExtension } from './node.ts';
import { storeExtension } from './store/extension.ts';
import type { EdgeKind } from './tables.ts';

// What each kind of edge adds to the common edge (node.ts): a home server its playback and
// rentals (S2.5), a store server its orders and packages (S2.6). A delivery edge serves pieces only.
export function edgeExtensions(kind: EdgeKind, opts: { /** Debian's ffmpeg (FFMPEG): a home server packages videos with it. */ ffmpeg?: string } = {}): (ctx: EdgeContext) => EdgeExtension[] {
  switch (kind) {
    case 'delivery':
      return () => [];
    case 'home':
      return (ctx) => [homeExtension(ctx, { ffmpeg: opts.ffmpeg })];
    case 'store':
      return (ctx) => [storeExtension(ctx)];
  }
}
