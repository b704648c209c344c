/**
 * Identity tokens (Docker's "<token>" user, an OAuth2 refresh token) against
 * an in-test registry and token service: the token is exchanged by the OAuth2
 * refresh-token grant (a form POST to the Bearer realm) for an access token,
 * never sent as a password; a refused token, a token service without OAuth2
 * and a registry asking for Basic auth are clear UNAUTHORIZED errors.
 */
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { RegistryStore } from '../../src/storage/registry-store.ts';
import { StorageError } from '../../src/storage/storage-error.ts';
import { startFakeRegistry, type FakeRegistry } from '../support/fake-registry.ts';

const REFRESH = 'refresh-token-for-tests';
let fake: FakeRegistry;
let mode: 'oauth' | 'no-oauth' | 'basic' = 'oauth';
const access = new Set<string>();

async function storageError(p: Promise<unknown>): Promise<StorageError> {
  const e = await p.then(
    () => undefined,
    (err: unknown) => err,
  );
  expect(e).toBeInstanceOf(StorageError);
  return e as StorageError;
}

beforeAll(async () => {
  fake = await startFakeRegistry();
  let serial = 0;
  fake.intercept = (req, res) => {
    const url = new URL(req.url, 'http://x');
    if (url.pathname === '/token') {
      if (req.method !== 'POST' || mode === 'no-oauth') {
        res.writeHead(mode === 'no-oauth' ? 405 : 400, { 'Content-Type': 'application/json' });
        res.end('{"error":"unsupported"}');
        return true;
      }
      const form = new URLSearchParams(req.body.toString('utf8'));
      if (req.headers['content-type'] !== 'application/x-www-form-urlencoded' || form.get('grant_type') !== 'refresh_token' || form.get('refresh_token') !== REFRESH || form.get('service') !== 'fake-registry') {
        res.writeHead(400, { 'Content-Type': 'application/json' });
        res.end('{"error":"invalid_grant"}');
        return true;
      }
      const token = `access-${++serial}`;
      access.add(token);
      res.writeHead(200, { 'Content-Type': 'application/json' });
      res.end(JSON.stringify({ access_token: token, expires_in: 300, scope: form.get('scope') }));
      return true;
    }
    const bearer = /^Bearer (.+)$/.exec(req.headers.authorization ?? '')?.[1];
    if (bearer !== undefined && access.has(bearer)) return false;
    res.writeHead(401, {
      'Content-Type': 'application/json',
      'WWW-Authenticate': mode === 'basic' ? 'Basic realm="fake"' : `Bearer realm="${fake.url}/token",service="fake-registry",scope="repository:team/app:pull"`,
    });
    res.end('{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}');
    return true;
  };
});
afterAll(() => fake.stop());
afterEach(() => {
  fake.requests.length = 0;
  mode = 'oauth';
});

describe('identity tokens', () => {
  it('are exchanged by the OAuth2 refresh-token grant for an access token, and never sent to the registry', async () => {
    const store = new RegistryStore({ url: fake.url, retries: 0, credentials: { identityToken: REFRESH } });
    expect(await store.listTags('team/app')).toEqual([]);
    const posts = fake.requests.filter((r) => r.url === '/token');
    expect(posts).toHaveLength(1);
    expect(posts[0]?.method).toBe('POST');
    const form = new URLSearchParams(posts[0]?.body.toString('utf8'));
    expect(Object.fromEntries(form)).toEqual({ grant_type: 'refresh_token', refresh_token: REFRESH, client_id: 'tufoci', service: 'fake-registry', scope: 'repository:team/app:pull' });
    // The refresh token goes only to the token service: not in a URL, not in a registry request's headers.
    for (const r of fake.requests.filter((q) => q.url !== '/token')) {
      expect(r.url).not.toContain(REFRESH);
      expect(JSON.stringify(r.headers)).not.toContain(REFRESH);
    }
  });

  it('a refused token is UNAUTHORIZED, naming the identity token', async () => {
    const store = new RegistryStore({ url: fake.url, retries: 0, credentials: { identityToken: 'revoked' } });
    const e = await storageError(store.listTags('team/app'));
    expect(e.code).toBe('UNAUTHORIZED');
    expect(e.message).toMatch(/refused the identity token for team\/app \(HTTP 400\)/);
    expect(e.message).not.toContain('revoked');
  });

  it('a token service without OAuth2 POST cannot use it: UNAUTHORIZED, asking for a username and password', async () => {
    mode = 'no-oauth';
    const e = await storageError(new RegistryStore({ url: fake.url, retries: 0, credentials: { identityToken: REFRESH } }).listTags('team/app'));
    expect(e.code).toBe('UNAUTHORIZED');
    expect(e.message).toMatch(/does not take OAuth2 POSTs \(HTTP 405\), so it cannot use an identity token; give a username and password instead/);
  });

  it('a registry asking for Basic auth is refused, not sent the token as a password', async () => {
    mode = 'basic';
    const e = await storageError(new RegistryStore({ url: fake.url, retries: 0, credentials: { identityToken: REFRESH } }).listTags('team/app'));
    expect(e.code).toBe('UNAUTHORIZED');
    expect(e.message).toMatch(/asks for Basic auth .* identity token .* only token \(Bearer\) authentication can use/);
    expect(fake.requests.every((r) => r.headers.authorization === undefined)).toBe(true);
  });
});
