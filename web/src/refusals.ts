import { ApiError } from './api.ts';

// Refusals the service names by code rather than by a `body/<field>` schema path
// (`invalid_price`, `weak_password`, `voucher_unknown`): the form field each belongs next to.
// Used with useSubmit, which shows an error whose `field` is one of the form's fields beside
// that field, in the API's own sentence (#13 "Bad input").

/** By code: a field name, or a function of the refusal (e.g. reading "window 2:" from its message). */
type ToField = string | ((e: ApiError) => string | null);
type Placement = Record<string, ToField> | ((e: ApiError) => string | null);

/**
 * Rethrows `err`, tied to the field `byCode` names for its code; a code it does not name goes
 * to the field the API names in `error.details.field` (docs/live.md), else stays unplaced.
 */
export function placeRefusal(err: unknown, byCode: Placement = {}): never {
  if (err instanceof ApiError && !err.field) {
    const to = typeof byCode === 'function' ? byCode : byCode[err.code];
    const field = typeof to === 'function' ? to(err) : (to ?? detailsField(err));
    if (field) err.placedField = field;
  }
  throw err;
}

/** The request field the API names in `error.details.field`, if any. */
export function detailsField(e: ApiError): string | null {
  return typeof e.details.field === 'string' ? e.details.field : null;
}

/** `invalid_<field>` -> `<field>` when the form has that field. */
export function invalidCodeField(e: ApiError, fields: string[]): string | null {
  const m = /^invalid_([a-z]+)$/i.exec(e.code);
  return m && fields.includes(m[1]) ? m[1] : null;
}
