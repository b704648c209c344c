/**
 * Registry authentication: Basic against the real docker-registry with an
 * htpasswd file, and the Bearer token flow against an in-test server that
 * answers like a registry plus its token service (401 + WWW-Authenticate,
 * token endpoint, scopes, revocation).
 */
import type { ServerResponse } from 'node:http';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { MetadataStore } from '../../src/storage/metadata-store.ts';
import { parseChallenges } from '../../src/storage/registry-auth.ts';
import { RegistryStore } from '../../src/storage/registry-store.ts';
import { StorageError } from '../../src/storage/storage-error.ts';
import { startFakeRegistry, type FakeRegistry, type RecordedRequest } from '../support/fake-registry.ts';
import { startRegistry, type RegistryServer } from '../support/registry-server.ts';

async function errorOf(promise: Promise<unknown>): Promise<StorageError> {
  const error = await promise.then(
    () => {
      throw new Error('expected a rejection');
    },
    (e: unknown) => e,
  );
  expect(error).toBeInstanceOf(StorageError);
  return error as StorageError;
}

describe('parseChallenges', () => {
  it('reads Bearer parameters, with commas inside quoted values', () => {
    expect(parseChallenges('Bearer realm="https://auth.example/token",service="registry.example",scope="repository:a/b:pull,push"')).toEqual([
      { scheme: 'bearer', params: { realm: 'https://auth.example/token', service: 'registry.example', scope: 'repository:a/b:pull,push' } },
    ]);
  });
  it('reads several challenges and unquoted values', () => {
    expect(parseChallenges('Basic realm="Registry Realm", Bearer realm=https://t/x, error=invalid_token')).toEqual([
      { scheme: 'basic', params: { realm: 'Registry Realm' } },
      { scheme: 'bearer', params: { realm: 'https://t/x', error: 'invalid_token' } },
    ]);
  });
  it('unescapes quoted pairs and tolerates garbage', () => {
    expect(parseChallenges('Bearer realm="a\\"b"')).toEqual([{ scheme: 'bearer', params: { realm: 'a"b' } }]);
    expect(parseChallenges('')).toEqual([]);
  });
});

describe('Bearer token flow (in-test registry + token service)', () => {
  let fake: FakeRegistry;
  const issued = new Map<string, string>(); // token → scope
  let requireBasic: string | undefined;
  let tokenResponse: ((res: ServerResponse) => boolean) | undefined;
  const tokenRequests = (): RecordedRequest[] => fake.requests.filter((r) => r.url.startsWith('/token'));

  beforeAll(async () => {
    fake = await startFakeRegistry();
    let serial = 0;
    fake.intercept = (req, res) => {
      const url = new URL(req.url, 'http://x');
      if (url.pathname === '/token') {
        if (tokenResponse) return tokenResponse(res);
        if (requireBasic !== undefined && req.headers.authorization !== requireBasic) {
          res.writeHead(401, { 'Content-Type': 'application/json' });
          res.end('{"details":"incorrect username or password"}');
          return true;
        }
        const scope = url.searchParams.getAll('scope').join(' ');
        const token = `tok-${++serial}`;
        issued.set(token, scope);
        res.writeHead(200, { 'Content-Type': 'application/json' });
        res.end(JSON.stringify({ token, expires_in: 300 }));
        return true;
      }
      const m = /^\/v2\/(.+?)\/(blobs|manifests|tags)\//.exec(url.pathname);
      const repo = m?.[1];
      const action = req.method === 'GET' || req.method === 'HEAD' ? 'pull' : 'push';
      const needed = repo === undefined ? '' : `repository:${repo}:${action === 'pull' ? 'pull' : 'pull,push'}`;
      const token = /^Bearer (.+)$/.exec(req.headers.authorization ?? '')?.[1];
      const granted = token === undefined ? undefined : issued.get(token);
      const ok = granted !== undefined && (needed === '' || granted === needed || (action === 'pull' && granted.startsWith(`repository:${repo}:`)));
      if (ok) return false; // fall through to the in-memory registry
      res.writeHead(401, {
        'Content-Type': 'application/json',
        'WWW-Authenticate': `Bearer realm="${fake.url}/token",service="fake-registry"${needed ? `,scope="${needed}"` : ''}`,
      });
      res.end('{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}');
      return true;
    };
  });
  afterAll(() => fake.stop());
  afterEach(() => {
    fake.requests.length = 0;
    requireBasic = undefined;
    tokenResponse = undefined;
  });

  it('fetches an anonymous token on the first 401, retries, and reuses the cached token', async () => {
    const store = new RegistryStore({ url: fake.url, retries: 0 });
    await store.ping();
    const metadata = new MetadataStore({ store });
    const bytes = new TextEncoder().encode('{"signed":{"version":1}}');
    await metadata.writeMetadata('team/app', '1.root.json', bytes);
    for (let i = 0; i < 3; i++) expect(Buffer.from(await metadata.readMetadata('team/app', '1.root.json', 1024)).equals(Buffer.from(bytes))).toBe(true);
    const scopes = tokenRequests().map((r) => new URL(r.url, 'http://x').searchParams.get('scope'));
    // one token for /v2/ (no scope), one to pull (the HEAD before upload), one to push; reads reuse them
    expect(scopes).toEqual([null, 'repository:team/app/tuf:pull', 'repository:team/app/tuf:pull,push']);
    expect(tokenRequests().every((r) => new URL(r.url, 'http://x').searchParams.get('service') === 'fake-registry')).toBe(true);
    expect(tokenRequests().every((r) => r.headers.authorization === undefined)).toBe(true);
    expect(store.auth.tokenRequests).toBe(3);
  });

  it('sends Basic credentials to the token endpoint, and reports refused credentials as UNAUTHORIZED', async () => {
    requireBasic = `Basic ${Buffer.from('ci:s3cret').toString('base64')}`;
    const good = new RegistryStore({ url: fake.url, retries: 0, credentials: { username: 'ci', password: 's3cret' } });
    expect(await good.listTags('team/other')).toEqual([]);
    expect(tokenRequests().map((r) => r.headers.authorization)).toEqual([requireBasic]);
    const bad = new RegistryStore({ url: fake.url, retries: 0, credentials: { username: 'ci', password: 'wrong' } });
    const error = await errorOf(bad.getManifest('team/other', 'timestamp.json', 1024));
    expect(error.code).toBe('UNAUTHORIZED');
    expect(error.detail).toMatchObject({ backend: 'registry', repository: 'team/other', reference: 'timestamp.json', status: 401 });
  });

  it('fetches a fresh token when the cached one is refused (revoked or expired)', async () => {
    const store = new RegistryStore({ url: fake.url, retries: 0 });
    await store.listTags('team/rev');
    issued.clear();
    await store.listTags('team/rev');
    expect(tokenRequests()).toHaveLength(2);
  });

  it('gives up after one answered challenge when the registry keeps refusing', async () => {
    tokenResponse = (res) => {
      res.writeHead(200, { 'Content-Type': 'application/json' });
      res.end('{"token":"never-valid"}');
      return true;
    };
    const store = new RegistryStore({ url: fake.url, retries: 0 });
    const error = await errorOf(store.getBlob('team/app', `sha256:${'0'.repeat(64)}`, 10));
    expect(error.code).toBe('UNAUTHORIZED');
    expect(fake.requests.filter((r) => r.url.startsWith('/v2/'))).toHaveLength(2);
  });

  it('types a broken token service: garbage → PROTOCOL, 5xx → UNAVAILABLE', async () => {
    tokenResponse = (res) => {
      res.writeHead(200, { 'Content-Type': 'text/html' });
      res.end('<html>sign in</html>');
      return true;
    };
    const store = new RegistryStore({ url: fake.url, retries: 0 });
    expect((await errorOf(store.listTags('team/x'))).code).toBe('PROTOCOL');
    tokenResponse = (res) => {
      res.writeHead(503);
      res.end();
      return true;
    };
    const error = await errorOf(new RegistryStore({ url: fake.url, retries: 0 }).listTags('team/x'));
    expect(error.code).toBe('UNAVAILABLE');
    expect(error.detail.repository).toBe('team/x');
  });
});

describe('Basic auth against docker-registry with htpasswd', () => {
  let registry: RegistryServer;
  beforeAll(async () => {
    registry = await startRegistry({ basicAuth: { username: 'tufoci', password: 'test-only-password' } });
  }, 30_000);
  afterAll(() => registry?.stop(), 30_000);

  it('works with the right credentials (write, read, list)', async () => {
    const store = new RegistryStore({ url: registry.url, credentials: { username: 'tufoci', password: 'test-only-password' } });
    await store.ping();
    const metadata = new MetadataStore({ store });
    const bytes = new TextEncoder().encode('{"signed":{"_type":"root","version":1}}');
    await metadata.writeMetadata('secure/app', '1.root.json', bytes);
    expect(Buffer.from(await metadata.readMetadata('secure/app', '1.root.json', 1024)).equals(Buffer.from(bytes))).toBe(true);
    expect((await metadata.listMetadata('secure/app')).map((f) => f.fileName)).toEqual(['1.root.json']);
  });

  it('refuses anonymous access and a wrong password with UNAUTHORIZED', async () => {
    const anonymous = new RegistryStore({ url: registry.url, retries: 0 });
    expect((await errorOf(anonymous.ping())).code).toBe('UNAUTHORIZED');
    const wrong = new RegistryStore({ url: registry.url, retries: 0, credentials: { username: 'tufoci', password: 'nope' } });
    const error = await errorOf(wrong.listTags('secure/app/tuf'));
    expect(error.code).toBe('UNAUTHORIZED');
    expect(error.detail).toMatchObject({ repository: 'secure/app/tuf', reference: 'tags/list', status: 401 });
  });
});
