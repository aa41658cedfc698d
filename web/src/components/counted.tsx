import type { JSX } from 'preact';
import { Field } from './forms.tsx';

// A labelled text input or text area with a character counter ("12/20") and its error. The
// counter does not stop typing: a text over the limit is sent, and the API's refusal is shown here.

export const chars = (s: string) => [...s].length;

export function CountedField(props: {
  label: string;
  name: string;
  value: string;
  limit: number;
  multiline?: boolean;
  hint?: string;
  error?: string;
  onInput: (v: string) => void;
}) {
  const { label, name, value, limit, multiline, hint, error, onInput } = props;
  const id = `f-${name}`;
  const n = chars(value);
  const described = [`${id}-count`, hint ? `${id}-hint` : '', error ? `${id}-error` : ''].filter(Boolean).join(' ');
  const common = {
    id,
    name,
    value,
    'aria-invalid': error ? ('true' as const) : undefined,
    'aria-describedby': described,
    onInput: (e: JSX.TargetedEvent<HTMLInputElement | HTMLTextAreaElement>) => onInput(e.currentTarget.value),
  };
  // Field lays out label, hint and error; the control and its counter go where its input would.
  return (
    <Field label={label} name={name} hint={hint} error={error}>
      {multiline ? <textarea rows={4} {...(common as JSX.HTMLAttributes<HTMLTextAreaElement>)} /> : <input {...(common as JSX.HTMLAttributes<HTMLInputElement>)} />}
      <small id={`${id}-count`} class={`counter${n > limit ? ' over' : ''}`}>
        {n}/{limit}
        <span class="visually-hidden"> characters</span>
        {n > limit ? ` — ${n - limit} over` : ''}
      </small>
    </Field>
  );
}
