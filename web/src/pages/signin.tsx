import { useState } from 'preact/hooks';
import { api } from '../api.ts';
import { Link, Page } from '../components/common.tsx';
import { Field, FormError, Submit, useSubmit } from '../components/forms.tsx';
import { navigate, type Match } from '../router.ts';
import { placeRefusal } from '../refusals.ts';
import { setSession, signInReason } from '../session.ts';

interface LoginAnswer {
  token: string;
  user: { id: string; username: string; roles: string[] };
}

async function signIn(username: string, password: string, next: string | null) {
  const a = await api<LoginAnswer>('POST', '/auth/login', { username, password }, { anonymous: true });
  setSession({ token: a.token, userId: a.user.id, username: a.user.username, roles: a.user.roles });
  signInReason.value = null;
  // Only an in-app path: `next` comes from the address bar.
  navigate(next && next.startsWith('/') && !next.startsWith('//') ? next : '/', { replace: true });
}

export function SignInPage({ query }: Match) {
  const [username, setUsername] = useState('');
  const [password, setPassword] = useState('');
  const form = useSubmit(['username', 'password']);
  const next = query.get('next');
  return (
    <Page title="Sign in">
      {signInReason.value && (
        <p class="notice" role="status">
          {signInReason.value}
        </p>
      )}
      <form class="narrow" onSubmit={(e) => (e.preventDefault(), form.run(() => signIn(username, password, next)))}>
        <FormError message={form.error} />
        <Field label="Username" name="username" autocomplete="username" required value={username} error={form.fieldErrors.username} onInput={(e) => setUsername(e.currentTarget.value)} />
        <Field label="Password" name="password" type="password" autocomplete="current-password" required value={password} error={form.fieldErrors.password} onInput={(e) => setPassword(e.currentTarget.value)} />
        <Submit busy={form.busy}>Sign in</Submit>
      </form>
      <p>
        No account yet? <Link to={`/signup${next ? `?next=${encodeURIComponent(next)}` : ''}`}>Sign up</Link>.
      </p>
    </Page>
  );
}

export function SignUpPage({ query }: Match) {
  const [username, setUsername] = useState('');
  const [password, setPassword] = useState('');
  const [repeat, setRepeat] = useState('');
  const form = useSubmit(['username', 'password']);
  const next = query.get('next');
  const mismatch = repeat !== '' && repeat !== password;
  return (
    <Page title="Sign up">
      <p>A new account is a member: it can buy and receive content. Publishing, selling vouchers and operating are roles an operator grants.</p>
      <form
        class="narrow"
        onSubmit={(e) => {
          e.preventDefault();
          if (mismatch) return;
          form.run(async () => {
            await api('POST', '/users/signup', { username, password }, { anonymous: true }).catch((err) =>
              placeRefusal(err, { invalid_username: 'username', username_taken: 'username', weak_password: 'password' }),
            );
            await signIn(username, password, next);
          });
        }}
      >
        <FormError message={form.error} />
        <Field label="Username" name="username" autocomplete="username" required value={username} error={form.fieldErrors.username} hint="Letters, digits, dot, dash or underscore." onInput={(e) => setUsername(e.currentTarget.value)} />
        <Field label="Password" name="password" type="password" autocomplete="new-password" required value={password} error={form.fieldErrors.password} onInput={(e) => setPassword(e.currentTarget.value)} />
        <Field label="Repeat the password" name="repeat" type="password" autocomplete="new-password" required value={repeat} error={mismatch ? 'The two passwords differ.' : undefined} onInput={(e) => setRepeat(e.currentTarget.value)} />
        <Submit busy={form.busy}>Create account</Submit>
      </form>
      <p>
        Already have an account? <Link to="/signin">Sign in</Link>.
      </p>
    </Page>
  );
}
