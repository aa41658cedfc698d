import { imageSize } from 'image-size';
import { AppError, badRequest } from '../core/errors.ts';

// S1.1 thumbnails: what an image must be to be a content's thumbnail. Shared by the origin
// (PUT /contents/:id/thumbnail) and the CLI (`cascade publish --thumbnail`, which checks
// before it publishes anything).

export const THUMBNAIL_MAX_BYTES = 256 * 1024;
export const THUMBNAIL_MAX_SIDE = 4096;

/** The accepted types, by the name image-size gives the format it finds in the bytes. */
export const THUMBNAIL_TYPES: Record<string, string> = { png: 'image/png', jpg: 'image/jpeg', webp: 'image/webp', gif: 'image/gif' };
export const THUMBNAIL_MIMES = Object.values(THUMBNAIL_TYPES);

export interface ThumbnailFacts {
  mime: string;
  width: number;
  height: number;
}

export const imageTooLarge = () =>
  new AppError('image_too_large', `A thumbnail is at most ${THUMBNAIL_MAX_BYTES} bytes (256 KiB).`, 413, { maxBytes: THUMBNAIL_MAX_BYTES });

/**
 * The image's type (sniffed from its bytes, never taken from the name or the header) and
 * size; refuses with `invalid_image` (not one of the four types, unreadable, larger than
 * 4096×4096, or not the `declared` type) or `image_too_large` (over 256 KiB).
 */
export function checkThumbnail(bytes: Uint8Array, declared?: string): ThumbnailFacts {
  if (bytes.length > THUMBNAIL_MAX_BYTES) throw imageTooLarge();
  const accepted = 'a PNG, JPEG, WebP or GIF image';
  if (bytes.length === 0) throw badRequest('invalid_image', `The thumbnail is empty: send ${accepted}.`);
  let found: { type?: string; width?: number; height?: number };
  try {
    found = imageSize(bytes);
  } catch {
    throw badRequest('invalid_image', `The thumbnail is not ${accepted} (its bytes are not a format this origin reads).`);
  }
  const mime = found.type ? THUMBNAIL_TYPES[found.type] : undefined;
  if (!mime) throw badRequest('invalid_image', `The thumbnail is ${found.type ?? 'an unknown format'}; it must be ${accepted}.`);
  const declaredType = declared?.split(';')[0].trim().toLowerCase();
  if (declaredType !== undefined && declaredType !== mime) {
    throw badRequest('invalid_image', `The bytes are ${mime}, but the request says ${declaredType || 'nothing'}: send Content-Type: ${mime}.`);
  }
  const { width = 0, height = 0 } = found;
  if (!(width >= 1 && height >= 1)) throw badRequest('invalid_image', 'The thumbnail has no width or height.');
  if (width > THUMBNAIL_MAX_SIDE || height > THUMBNAIL_MAX_SIDE) {
    throw badRequest('invalid_image', `The thumbnail is ${width}×${height}; at most ${THUMBNAIL_MAX_SIDE}×${THUMBNAIL_MAX_SIDE} is accepted.`);
  }
  return { mime, width, height };
}
