import { ApiError } from '../api.ts';

// Refusals the service names by code rather than by a `body/<field>` schema path: the
// form field each belongs next to. Used with useSubmit, which places an error whose
// `field` is one of the form's fields beside that field (#13 "Bad input").

/** Rethrows `err` with `field` set from `byCode` (the API's code → the form's field name). */
export function placeRefusal(err: unknown, byCode: Record<string, string | ((e: ApiError) => string | null)>): never {
  if (err instanceof ApiError && !err.field) {
    const to = byCode[err.code];
    const field = typeof to === 'function' ? to(err) : to;
    if (field) Object.defineProperty(err, 'field', { value: field });
  }
  throw err;
}
