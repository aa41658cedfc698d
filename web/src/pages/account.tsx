import { useEffect, useState } from 'preact/hooks';
import { api } from '../api.ts';
import { ErrorNote, Link, Loading, Page, useLoad } from '../components/common.tsx';
import { Field, FormError, Submit, useSubmit } from '../components/forms.tsx';
import { placeRefusal } from '../refusals.ts';
import type { Me } from '../types.ts';

// Account (S3.8): who you are (GET /auth/me) and your contact details, PUT /me/contact
// {email, webPage}. The e-mail address receives reservation IDs and settings of live bookings;
// each booking chooses whether the program page shows the address or the web page.

export function AccountPage() {
  const me = useLoad(() => api<Me>('GET', '/auth/me'));
  const [email, setEmail] = useState('');
  const [webPage, setWebPage] = useState('');
  const [done, setDone] = useState('');
  const form = useSubmit(['email', 'webPage']);
  useEffect(() => {
    if (me.data) {
      setEmail(me.data.email ?? '');
      setWebPage(me.data.webPage ?? '');
    }
  }, [me.data]);
  const u = me.data;
  return (
    <Page title="Account">
      <ErrorNote message={me.error} />
      {me.loading && !u && <Loading what="your account" />}
      {u && (
        <>
          <dl class="facts">
            <dt>Username</dt>
            <dd>{u.username}</dd>
            <dt>Roles</dt>
            <dd>{u.roles.join(', ')}</dd>
          </dl>
          <section aria-labelledby="contact-h">
            <h2 id="contact-h">Contact details</h2>
            <p class="muted">
              Live bookings send the reservation ID and the encoder settings to this address. A program page shows your address or web page only when you choose so for that
              booking. Leave a field empty to remove it.
            </p>
            <form
              class="narrow"
              noValidate
              onSubmit={(e) => {
                e.preventDefault();
                setDone('');
                form.run(async () => {
                  let next: Me;
                  try {
                    next = await api<Me>('PUT', '/me/contact', { email: email.trim() || null, webPage: webPage.trim() || null });
                  } catch (err) {
                    placeRefusal(err, { invalid_email: 'email', invalid_web_page: 'webPage' });
                  }
                  setEmail(next.email ?? '');
                  setWebPage(next.webPage ?? '');
                  setDone('Contact details saved.');
                });
              }}
            >
              <FormError message={form.error} />
              <Field label="E-mail address" name="email" type="email" autocomplete="email" maxLength={320} value={email} error={form.fieldErrors.email} onInput={(e) => setEmail(e.currentTarget.value)} />
              <Field label="Web page" name="webPage" type="url" autocomplete="url" hint="An http:// or https:// address." maxLength={500} value={webPage} error={form.fieldErrors.webPage} onInput={(e) => setWebPage(e.currentTarget.value)} />
              <Submit busy={form.busy}>Save contact details</Submit>
              <p role="status" class="ok-note">
                {done}
              </p>
            </form>
          </section>
          <p>
            Your live bookings: <Link to="/live/mine">My channel</Link>.
          </p>
        </>
      )}
    </Page>
  );
}
