import { useEffect, useRef, useState } from 'preact/hooks';
import { api, qs } from '../api.ts';
import { ErrorNote, Loading, NeedsRole, Page, useLoad } from '../components/common.tsx';
import { Field, FormError, Submit, useSubmit } from '../components/forms.tsx';
import { when } from '../format.ts';
import { navigate, type Match } from '../router.ts';
import { hasRole } from '../session.ts';
import { placeRefusal } from '../refusals.ts';
import { TableWrap } from '../components/table-wrap.tsx';

// Users (operators): the accounts in username order, a page at a time (GET /users), found by
// exact username; an account's roles (PUT /users/:id/roles) and a password reset
// (PUT /users/:id/password); a new account with any roles (POST /users).

/** The roles of src/core/roles.ts (the API refuses any other with its sentence). */
const ROLES = ['member', 'premium', 'publisher', 'store', 'operator'] as const;
const ROLE_HINTS: Record<string, string> = {
  member: 'receives content',
  premium: 'first in scheduled deliveries',
  publisher: 'publishes content, royalties',
  store: 'sells vouchers',
  operator: 'manages the origin',
};
const PAGE_SIZE = 20;

interface User {
  id: string;
  username: string;
  roles: string[];
  createdAt: string;
}

export function UsersPage(m: Match) {
  return hasRole('operator') ? <Users {...m} /> : <NeedsRole role="operator" />;
}

function Users({ query }: Match) {
  const name = query.get('username') ?? '';
  const after = query.get('after') ?? '';
  const [text, setText] = useState(name);
  // The cursors of the pages before this one, for "Previous page".
  const [trail, setTrail] = useState<string[]>([]);
  const [tick, setTick] = useState(0);
  const [editing, setEditing] = useState<User | null>(null);
  const list = useLoad(() => api<{ items: User[]; nextCursor: string | null }>('GET', `/users${qs({ limit: PAGE_SIZE, username: name || undefined, after: after || undefined })}`), [name, after, tick]);
  useEffect(() => setText(name), [name]);
  const go = (params: { username?: string; after?: string }) => navigate(`/admin/users${qs(params)}`);
  const items = list.data?.items ?? [];
  const changed = (u: User) => {
    setEditing(u);
    setTick((t) => t + 1);
  };
  return (
    <Page title="Users">
      <form
        role="search"
        class="search"
        onSubmit={(e) => {
          e.preventDefault();
          setTrail([]);
          go({ username: text.trim() || undefined });
        }}
      >
        <label for="user-q" class="visually-hidden">
          Find an account by its exact username
        </label>
        <input id="user-q" type="search" value={text} maxLength={40} placeholder="Exact username" autocomplete="off" onInput={(e) => setText(e.currentTarget.value)} />
        <button type="submit">Find</button>
        {name && (
          <button type="button" class="secondary" onClick={() => (setTrail([]), go({}))}>
            All accounts
          </button>
        )}
      </form>
      <ErrorNote message={list.error} />
      {list.loading && !list.data && <Loading what="accounts" />}
      {list.data && items.length === 0 && <p class="muted">{name ? `No account is named “${name}”.` : 'No accounts.'}</p>}
      {items.length > 0 && (
        <TableWrap label="Accounts table">
          <table class="users">
            <caption>{name ? `Accounts named “${name}”` : `Accounts in username order${trail.length ? `, page ${trail.length + 1}` : ''}`}</caption>
            <thead>
              <tr>
                <th scope="col">Username</th>
                <th scope="col">Roles</th>
                <th scope="col" class="wide-only">
                  Created
                </th>
                <th scope="col">
                  <span class="visually-hidden">Actions</span>
                </th>
              </tr>
            </thead>
            <tbody>
              {items.map((u) => (
                <tr key={u.id}>
                  <th scope="row">{u.username}</th>
                  <td>{u.roles.join(', ')}</td>
                  <td class="wide-only">{when(u.createdAt)}</td>
                  <td>
                    <button type="button" class="secondary" aria-expanded={editing?.id === u.id} onClick={() => setEditing(editing?.id === u.id ? null : u)}>
                      Manage<span class="visually-hidden"> {u.username}</span>
                    </button>
                  </td>
                </tr>
              ))}
            </tbody>
          </table>
        </TableWrap>
      )}
      <div class="pager">
        {trail.length > 0 && (
          <button
            type="button"
            class="secondary"
            onClick={() => {
              const prev = trail.slice(0, -1);
              setTrail(prev);
              go({ username: name || undefined, after: trail.at(-1) || undefined });
            }}
          >
            Previous page
          </button>
        )}
        {list.data?.nextCursor && (
          <button
            type="button"
            class="secondary"
            onClick={() => {
              setTrail((t) => [...t, after]);
              go({ username: name || undefined, after: list.data!.nextCursor! });
            }}
          >
            Next page
          </button>
        )}
      </div>
      {editing && <UserEditor key={editing.id} user={editing} onChanged={changed} onClose={() => setEditing(null)} />}
      <CreateUser onCreated={(u) => (setEditing(u), setTrail([]), go({ username: u.username }))} />
    </Page>
  );
}

function RoleBoxes({ legend, roles, onChange, error, idPrefix }: { legend: string; roles: string[]; onChange: (r: string[]) => void; error?: string; idPrefix: string }) {
  return (
    <fieldset aria-describedby={error ? `${idPrefix}-roles-error` : undefined}>
      <legend>{legend}</legend>
      <div class="roles">
        {ROLES.map((r) => (
          <label key={r}>
            <input type="checkbox" checked={roles.includes(r)} onChange={(e) => onChange(ROLES.filter((x) => (x === r ? e.currentTarget.checked : roles.includes(x))))} /> {r}{' '}
            <span class="muted small">({ROLE_HINTS[r]})</span>
          </label>
        ))}
      </div>
      {error && (
        <small id={`${idPrefix}-roles-error`} class="field-error" role="alert">
          {error}
        </small>
      )}
    </fieldset>
  );
}

function UserEditor({ user, onChanged, onClose }: { user: User; onChanged: (u: User) => void; onClose: () => void }) {
  const [roles, setRoles] = useState(user.roles);
  const [password, setPassword] = useState('');
  const [saved, setSaved] = useState('');
  const rolesForm = useSubmit(['roles']);
  const pwForm = useSubmit(['password']);
  const heading = useRef<HTMLHeadingElement>(null);
  useEffect(() => heading.current?.focus(), []);
  return (
    <section class="user-editor" aria-labelledby="edit-h">
      <h2 id="edit-h" tabIndex={-1} ref={heading}>
        Manage {user.username}
      </h2>
      <form
        onSubmit={(e) => {
          e.preventDefault();
          setSaved('');
          rolesForm.run(async () => {
            try {
              const u = await api<User>('PUT', `/users/${encodeURIComponent(user.id)}/roles`, { roles });
              setSaved(`Roles of ${u.username}: ${u.roles.join(', ')}.`);
              onChanged(u);
            } catch (err) {
              placeRefusal(err, { invalid_role: 'roles' });
            }
          });
        }}
      >
        <FormError message={rolesForm.error} />
        <RoleBoxes legend={`Roles of ${user.username}`} roles={roles} onChange={setRoles} error={rolesForm.fieldErrors.roles} idPrefix="edit" />
        <Submit busy={rolesForm.busy}>Save roles</Submit>
      </form>
      <form
        class="narrow"
        onSubmit={(e) => {
          e.preventDefault();
          setSaved('');
          pwForm.run(async () => {
            try {
              await api('PUT', `/users/${encodeURIComponent(user.id)}/password`, { password });
            } catch (err) {
              placeRefusal(err, { weak_password: 'password' });
            }
            setPassword('');
            setSaved(`New password set for ${user.username}; their sessions are signed out.`);
          });
        }}
      >
        <FormError message={pwForm.error} />
        <Field
          label={`New password for ${user.username}`}
          name="password"
          type="password"
          autocomplete="new-password"
          hint="At least 10 characters. Tell the member through a safe channel."
          maxLength={200}
          value={password}
          error={pwForm.fieldErrors.password}
          onInput={(e) => setPassword(e.currentTarget.value)}
        />
        <Submit busy={pwForm.busy}>Reset password</Submit>
      </form>
      <p role="status" class="ok-note">
        {saved}
      </p>
      <button type="button" class="secondary" onClick={onClose}>
        Close
      </button>
    </section>
  );
}

function CreateUser({ onCreated }: { onCreated: (u: User) => void }) {
  const [username, setUsername] = useState('');
  const [password, setPassword] = useState('');
  const [roles, setRoles] = useState<string[]>(['member']);
  const [done, setDone] = useState('');
  const form = useSubmit(['username', 'password', 'roles']);
  return (
    <section aria-labelledby="create-h">
      <h2 id="create-h">Create an account</h2>
      <form
        class="narrow"
        noValidate
        onSubmit={(e) => {
          e.preventDefault();
          setDone('');
          form.run(async () => {
            let u: User;
            try {
              u = await api<User>('POST', '/users', { username: username.trim(), password, roles });
            } catch (err) {
              placeRefusal(err, { invalid_username: 'username', username_taken: 'username', weak_password: 'password', invalid_role: 'roles' });
            }
            setUsername('');
            setPassword('');
            setDone(`Account ${u.username} created with roles ${u.roles.join(', ')}.`);
            onCreated(u);
          });
        }}
      >
        <FormError message={form.error} />
        <Field label="Username" name="username" hint="3–40 characters: a–z, 0–9, “.”, “_”, “-”." autocomplete="off" maxLength={40} value={username} error={form.fieldErrors.username} onInput={(e) => setUsername(e.currentTarget.value)} />
        <Field label="Password" name="password" type="password" autocomplete="new-password" hint="At least 10 characters." maxLength={200} value={password} error={form.fieldErrors.password} onInput={(e) => setPassword(e.currentTarget.value)} />
        <RoleBoxes legend="Roles" roles={roles} onChange={setRoles} error={form.fieldErrors.roles} idPrefix="create" />
        <Submit busy={form.busy}>Create account</Submit>
        <p role="status" class="ok-note">
          {done}
        </p>
      </form>
    </section>
  );
}
