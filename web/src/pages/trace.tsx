import { useState } from 'preact/hooks';
import { api } from '../api.ts';
import { Page } from '../components/common.tsx';
import { Field, FormError, Submit, useSubmit } from '../components/forms.tsx';
import { when } from '../format.ts';
import type { TraceAnswer } from '../types.ts';

// S2.7: check a copy (POST /marks/trace, as `cascade trace FILE`). Anyone signed in learns
// whether it is genuine and why; operators and the content's publisher also see whose copy it
// is — user, edge, origin — with the confidence of the match.

export function TracePage() {
  const [file, setFile] = useState<File | null>(null);
  const [answer, setAnswer] = useState<TraceAnswer | null>(null);
  const [checked, setChecked] = useState('');
  const form = useSubmit(['file']);

  return (
    <Page title="Check a copy">
      <p class="muted">
        Every copy a home or store server hands out carries an invisible mark naming who received it. Send a suspect image, audio file or video to learn whether it is a genuine copy; operators and the
        content’s publisher also learn whose copy it is.
      </p>
      <form
        class="narrow"
        onSubmit={(e) => {
          e.preventDefault();
          form.run(async () => {
            if (!file) throw new Error('Choose the file to check.');
            setAnswer(null);
            const r = await api<TraceAnswer>('POST', '/marks/trace', undefined, { rawBody: file, headers: { 'content-type': 'application/octet-stream' } });
            setChecked(file.name);
            setAnswer(r);
          });
        }}
      >
        <FormError message={form.error} />
        <Field label="File" name="file" type="file" required accept="image/*,audio/*,video/*" error={form.fieldErrors.file} hint="An image (PNG, JPEG), audio (WAV, MP3…) or video; a long video takes a while." onChange={(e) => setFile(e.currentTarget.files?.[0] ?? null)} />
        <Submit busy={form.busy}>{form.busy ? 'Checking…' : 'Check'}</Submit>
      </form>
      {answer && <TraceResult name={checked} t={answer} />}
    </Page>
  );
}

function TraceResult({ name, t }: { name: string; t: TraceAnswer }) {
  return (
    <section aria-labelledby="trace-h" class="trace-result" role="status">
      <h2 id="trace-h">
        {name}: {t.genuine ? 'genuine' : 'not genuine'}
      </h2>
      <p>{t.message}</p>
      {t.copy && (
        <dl class="facts">
          <dt>User</dt>
          <dd>
            {t.copy.user.username ?? '?'} <span class="muted">({t.copy.user.id})</span>
          </dd>
          <dt>Edge</dt>
          <dd>
            {t.copy.edge.label ?? '?'} <span class="muted">({t.copy.edge.id})</span>
          </dd>
          <dt>Origin</dt>
          <dd>{t.copy.origin.id}</dd>
          <dt>Content</dt>
          <dd>{t.copy.content.title ?? t.copy.content.id}</dd>
          <dt>Delivered</dt>
          <dd>
            {when(t.copy.deliveredAt)} ({t.copy.kind}, serial {t.copy.serial})
          </dd>
        </dl>
      )}
      {t.confidence !== null && (
        <p class="muted">
          Confidence {t.falseMatch !== null && t.falseMatch < 1e-6 ? '> 99.9999 %' : `${(t.confidence * 100).toFixed(4)} %`} (chance of a false match {t.falseMatch?.toExponential(1)}); {t.bitErrors} of {t.bits} bits
          corrected; found at {t.where}.
        </p>
      )}
    </section>
  );
}
