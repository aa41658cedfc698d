import type { FastifyPluginAsync } from 'fastify';
import { errorSchema } from '../core/http.ts';
import type { AccountService } from './service.ts';
import { ROLES, type Role } from './tables.ts';

const userSchema = {
  type: 'object',
  properties: { id: { type: 'string' }, username: { type: 'string' }, roles: { type: 'array', items: { type: 'string' } }, createdAt: { type: 'string' } },
} as const;
const credentials = {
  type: 'object',
  required: ['username', 'password'],
  additionalProperties: false,
  properties: { username: { type: 'string', maxLength: 40 }, password: { type: 'string', maxLength: 200 } },
} as const;
const roles = { type: 'array', minItems: 1, maxItems: ROLES.length, items: { type: 'string', enum: [...ROLES] } } as const;
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
