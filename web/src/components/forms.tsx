import type { ComponentChildren, JSX } from 'preact';
import { useRef, useState } from 'preact/hooks';
import { ApiError } from '../api.ts';

// Forms post once (a double click does not send twice: the button is disabled and a second
// submit is ignored while the first runs) and show the API's sentence next to the field it
// names, or above the form when it names none (#13 "Bad input").

export interface SubmitState {
  busy: boolean;
  /** The error not tied to a field. */
  error: string | null;
  /** Errors by field name. */
  fieldErrors: Record<string, string>;
  run: (fn: () => Promise<void>) => Promise<void>;
}

/** `fields`: the form's field names; an API error naming one of them is shown beside it. */
export function useSubmit(fields: string[] = []): SubmitState {
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<string | null>(null);
  const [fieldErrors, setFieldErrors] = useState<Record<string, string>>({});
  const running = useRef(false);
  const run = async (fn: () => Promise<void>) => {
    if (running.current) return;
    running.current = true;
    setBusy(true);
    setError(null);
    setFieldErrors({});
    try {
      await fn();
    } catch (err) {
      if (err instanceof ApiError && err.field && fields.includes(err.field)) setFieldErrors({ [err.field]: err.message });
      else setError(err instanceof Error ? err.message : String(err));
    } finally {
      running.current = false;
      setBusy(false);
    }
  };
  return { busy, error, fieldErrors, run };
}

export function FormError({ message }: { message: string | null }) {
  if (!message) return null;
  return (
    <p class="error" role="alert">
      {message}
    </p>
  );
}

type InputProps = JSX.HTMLAttributes<HTMLInputElement> & { name: string; value?: string | number; type?: string; required?: boolean; min?: number | string; max?: number | string; step?: number | string; accept?: string; autocomplete?: string; maxLength?: number; placeholder?: string };

/** A labelled input with its hint and its error, wired for screen readers (aria-describedby, aria-invalid). */
export function Field(props: { label: string; hint?: string; error?: string; children?: ComponentChildren } & InputProps) {
  const { label, hint, error, children, ...input } = props;
  const id = `f-${input.name}`;
  const described = [hint ? `${id}-hint` : '', error ? `${id}-error` : ''].filter(Boolean).join(' ') || undefined;
  return (
    <div class="field">
      <label for={id}>{label}</label>
      {children ?? <input id={id} aria-invalid={error ? 'true' : undefined} aria-describedby={described} {...(input as any)} />}
      {hint && (
        <small id={`${id}-hint`} class="hint">
          {hint}
        </small>
      )}
      {error && (
        <small id={`${id}-error`} class="field-error" role="alert">
          {error}
        </small>
      )}
    </div>
  );
}

export function Submit({ busy, children }: { busy: boolean; children: ComponentChildren }) {
  return (
    <button type="submit" disabled={busy} aria-busy={busy ? 'true' : undefined}>
      {children}
    </button>
  );
}
