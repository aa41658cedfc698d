import { randomBytes } from 'node:crypto';
import { dropSchema, openDatabase, type DbHandle } from '../../src/db/connection.ts';

// Storage tests run on both engines: embedded PGlite always, real PostgreSQL when
// DATABASE_URL is set. Each PostgreSQL test database lives in its own schema, so
// parallel runs (and parallel files) never collide; the schema is dropped after.

export interface TestEngine {
  name: 'pglite' | 'postgres';
  open(): Promise<DbHandle>;
}

export function testEngines(): TestEngine[] {
  const engines: TestEngine[] = [{ name: 'pglite', open: () => openDatabase({}) }];
  const url = process.env.DATABASE_URL;
  if (url) {
    engines.push({
      name: 'postgres',
      async open() {
        const schema = `t_${process.pid}_${randomBytes(4).toString('hex')}`;
        const handle = await openDatabase({ databaseUrl: url, schema });
        return {
          ...handle,
          async close() {
            await handle.close();
            await dropSchema(url, schema);
          },
        };
      },
    });
  }
  return engines;
}
