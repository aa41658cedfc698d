import type { FastifyPluginAsync } from 'fastify';
import { errorSchema, bearerToken } from '../core/http.ts';
import { MAX_EMAIL_LENGTH } from '../core/email-address.ts';
import { MAX_WEB_PAGE_LENGTH, type AccountService } from './service.ts';
import { ROLES, type Role } from './tables.ts';

const userSchema = {
  type: 'object',
  properties: {
    id: { type: 'string' },
    username: { type: 'string' },
    roles: { type: 'array', items: { type: 'string' } },
    createdAt: { type: 'string' },
    email: { type: ['string', 'null'], description: 'S3.8: the member’s contact address (null: none given)' },
    webPage: { type: ['string', 'null'], description: 'S3.8: the member’s web page (null: none given)' },
  },
} as const;
const credentials = {
  type: 'object',
  required: ['username', 'password'],
  additionalProperties: false,
  properties: { username: { type: 'string', maxLength: 40 }, password: { type: 'string', maxLength: 200 } },
} as const;
const roles = { type: 'array', minItems: 1, maxItems: ROLES.length, items: { type: 'string', enum: [...ROLES] } } as const;
const password = { type: 'string', maxLength: 200 } as const;
const userList = { type: 'object', properties: { items: { type: 'array', items: userSchema }, nextCursor: { type: ['string', 'null'] } } } as const;
const idParams = { type: 'object', required: ['id'], properties: { id: { type: 'string', maxLength: 64 } } } as const;

export function accountRoutes(accounts: AccountService): FastifyPluginAsync {
  return async (app) => {
    app.post<{ Body: { username: string; password: string } }>('/auth/login', {
      config: { access: 'public' },
      schema: {
        summary: 'Sign in; returns an API token for the CLI and agents',
        tags: ['accounts'],
        body: credentials,
        response: { 200: { type: 'object', properties: { token: { type: 'string' }, user: userSchema } }, 401: errorSchema },
      },
      handler: async (req) => accounts.login(req.body.username, req.body.password),
    });

    app.post('/auth/logout', {
      config: { access: 'user-or-terminal' },
      schema: { summary: 'Revoke the token used for this call', tags: ['accounts'] },
      handler: async (req, reply) => {
        await accounts.revokeToken(req.headers.authorization!.replace(/^Bearer\s+/i, ''));
        reply.code(204).send();
      },
    });

    app.get('/auth/me', {
      config: { access: 'user-or-terminal' },
      schema: { summary: 'Who this token belongs to', tags: ['accounts'] },
      handler: async (req) => ({ ...(await accounts.getUser(req.principal!.userId)), terminalId: req.principal!.terminalId }),
    });

    // S3.8: the member's contact details. The schema's bounds are loose so that the service's
    // checks answer with their own codes (`invalid_email`, `invalid_web_page`).
    app.put<{ Body: { email?: string | null; webPage?: string | null } }>('/me/contact', {
      config: { access: 'user' },
      schema: {
        summary: 'Set or clear (null) your e-mail address and web page (S3.8); a field left out stays as it is',
        tags: ['accounts'],
        body: {
          type: 'object',
          additionalProperties: false,
          properties: {
            email: { type: ['string', 'null'], maxLength: 1000, description: `an address such as name@example.org, at most ${MAX_EMAIL_LENGTH} characters; null clears it` },
            webPage: { type: ['string', 'null'], maxLength: 1000, description: `an http(s) URL, at most ${MAX_WEB_PAGE_LENGTH} characters; null clears it` },
          },
        },
        response: { 200: userSchema, 400: errorSchema, 401: errorSchema, 403: errorSchema },
      },
      handler: async (req) => accounts.setContact(req.principal!.userId, req.body),
    });

    app.post<{ Body: { label: string; expiresInDays?: number } }>('/auth/tokens', {
      config: { access: 'user' },
      schema: {
        summary: 'Create another API token for this account (e.g. for an agent); an account session only',
        tags: ['accounts'],
        body: {
          type: 'object',
          required: ['label'],
          additionalProperties: false,
          properties: { label: { type: 'string', minLength: 1, maxLength: 80 }, expiresInDays: { type: 'integer', minimum: 1, maximum: 3650 } },
        },
      },
      handler: async (req) => accounts.createApiToken(req.principal!.userId, req.body.label, req.body.expiresInDays),
    });

    app.post<{ Body: { username: string; password: string } }>('/users/signup', {
      config: { access: 'public' },
      schema: { summary: 'Register as a general member (S3.1)', tags: ['accounts'], body: credentials, response: { 201: userSchema, 400: errorSchema, 409: errorSchema } },
      handler: async (req, reply) => reply.code(201).send(await accounts.createUser(req.body.username, req.body.password, ['member'])),
    });

    app.post<{ Body: { username: string; password: string; roles: Role[] } }>('/users', {
      config: { access: ['operator'] },
      schema: {
        summary: 'Create an account with any roles',
        tags: ['accounts'],
        body: { type: 'object', required: ['username', 'password', 'roles'], additionalProperties: false, properties: { ...credentials.properties, roles } },
        response: { 201: userSchema, 400: errorSchema, 409: errorSchema },
      },
      handler: async (req, reply) => reply.code(201).send(await accounts.createUser(req.body.username, req.body.password, req.body.roles)),
    });

    app.get<{ Querystring: { limit: number; after?: string; username?: string } }>('/users', {
      config: { access: ['operator'] },
      schema: {
        summary: 'Accounts in username order; `after` is the previous page’s nextCursor, `username` finds one account by name',
        tags: ['accounts'],
        querystring: {
          type: 'object',
          additionalProperties: false,
          properties: {
            limit: { type: 'integer', minimum: 1, maximum: 200, default: 100 },
            after: { type: 'string', maxLength: 40 },
            username: { type: 'string', maxLength: 40 },
          },
        },
        response: { 200: userList, 400: errorSchema },
      },
      handler: async (req) => accounts.listUsers(req.query),
    });

    app.put<{ Body: { currentPassword: string; newPassword: string } }>('/auth/password', {
      config: { access: 'user' },
      schema: {
        summary: 'Change this account’s own password (the current one is required); the account’s other sessions are signed out (this one stays; terminals stay)',
        tags: ['accounts'],
        body: { type: 'object', required: ['currentPassword', 'newPassword'], additionalProperties: false, properties: { currentPassword: password, newPassword: password } },
        response: { 400: errorSchema, 401: errorSchema },
      },
      handler: async (req, reply) => {
        await accounts.changePassword(req.principal!.userId, req.body.currentPassword, req.body.newPassword, bearerToken(req.headers.authorization));
        reply.code(204).send();
      },
    });

    app.put<{ Params: { id: string }; Body: { password: string } }>('/users/:id/password', {
      config: { access: ['operator'] },
      schema: {
        summary: 'Set another account’s password (an operator’s reset); that account’s sessions are signed out (its terminals stay)',
        tags: ['accounts'],
        params: idParams,
        body: { type: 'object', required: ['password'], additionalProperties: false, properties: { password } },
        response: { 400: errorSchema, 404: errorSchema },
      },
      handler: async (req, reply) => {
        await accounts.setPassword(req.params.id, req.body.password);
        reply.code(204).send();
      },
    });

    app.get<{ Params: { id: string } }>('/users/:id', {
      config: { access: ['operator'] },
      schema: { summary: 'One account', tags: ['accounts'], params: idParams, response: { 200: userSchema } },
      handler: async (req) => accounts.getUser(req.params.id),
    });

    app.put<{ Params: { id: string }; Body: { roles: Role[] } }>('/users/:id/roles', {
      config: { access: ['operator'] },
      schema: {
        summary: 'Replace an account’s roles',
        tags: ['accounts'],
        params: idParams,
        body: { type: 'object', required: ['roles'], additionalProperties: false, properties: { roles } },
        response: { 200: userSchema },
      },
      handler: async (req) => accounts.setRoles(req.params.id, req.body.roles),
    });
  };
}
