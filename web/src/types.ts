// Shapes the API answers (docs/content-list.md, docs/protocol.md); only what the app reads.

export interface CatalogItem {
  id: string;
  title: string;
  summary: string;
  author: string;
  genre: string;
  price: number;
  publisher: string;
  totalSize: number;
  pieces: number;
  createdAt: string;
  thumbnailUrl?: string | null;
}

export interface Comment {
  id: string;
  author: string;
  text: string;
  createdAt: string;
}

/** An item of the personal content list (S1.4). */
export interface ListItem extends CatalogItem {
  affordable: boolean;
  received: boolean;
  preferredGenre: boolean;
  placement: { until: string } | null;
  why: string[];
  rating: { average: number | null; count: number; mine: number | null };
  comments: Comment[];
  commentCount: number;
  notes: string | null;
  holdersOnline: number;
}

export interface Page<T> {
  items: T[];
  nextCursor: string | null;
}
