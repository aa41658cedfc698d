import { ApiError } from '../api.ts';

// Some refusals name their field by code rather than in the message (`invalid_price`,
// `voucher_unknown`): these helpers tie them to the form field, so useSubmit shows the
// API's sentence next to it (#13 "Bad input").

class FieldApiError extends ApiError {
  constructor(
    err: ApiError,
    private readonly named: string,
  ) {
    super(err.code, err.message, err.status);
  }
  override get field(): string {
    return this.named;
  }
}

/** Re-throws `err` tied to the field `toField(err)` returns (null: as it is). */
export function tieToField(err: unknown, toField: (e: ApiError) => string | null): never {
  if (err instanceof ApiError && err.field === null) {
    const f = toField(err);
    if (f) throw new FieldApiError(err, f);
  }
  throw err;
}

/** `invalid_<field>` -> `<field>` when the form has it. */
export function byInvalidCode(fields: string[]) {
  return (e: ApiError) => {
    const m = /^invalid_([a-z]+)$/.exec(e.code);
    return m && fields.includes(m[1]) ? m[1] : null;
  };
}
