/**
 * Registry authentication, as the distribution token spec and Docker clients
 * do it: start anonymous; on `401` read `WWW-Authenticate`:
 * - `Basic realm=...` → send the configured username/password from then on;
 * - `Bearer realm=...,service=...,scope=...` → GET the realm with that
 *   service and scope (with Basic credentials when configured, anonymously
 *   otherwise), cache the token until shortly before `expires_in`, and send it
 *   for later requests of the same repository and access class.
 * The caller retries the request once after a successful answer to a challenge.
 *
 * Credentials are a username and password, or an identity token (Docker's
 * `<token>` user: an OAuth2 refresh token). An identity token is exchanged, as
 * Docker does, by POSTing the OAuth2 refresh-token grant to the Bearer realm
 * (`grant_type=refresh_token`, `service`, `scope`, `client_id`) for an access
 * token; it is never sent as a password, and a registry that asks for Basic
 * auth is refused with a message saying why.
 */
import { requestSignal, waitingFor } from './deadline.ts';
import { readBodyBounded } from './http-body.ts';
import { httpRequest, type HttpRequestInit, type HttpResponse } from './http-client.ts';
import { StorageError, type StorageErrorDetail } from './storage-error.ts';

/** A username and password, or an identity token (an OAuth2 refresh token for the registry's token service). */
export type Credentials = { username: string; password: string } | { identityToken: string };

/** The OAuth2 client id sent with an identity token (the token service may log it). */
const OAUTH_CLIENT_ID = 'tufoci';

export interface Challenge {
  scheme: string;
  params: Record<string, string>;
}

/** Parse a WWW-Authenticate header into its challenges (scheme lowercased, params unquoted). */
export function parseChallenges(header: string): Challenge[] {
  const challenges: Challenge[] = [];
  const input = header.trim();
  let pos = 0;
  const scheme = /\s*([A-Za-z][A-Za-z0-9!#$%&'*+.^_`|~-]*)/y;
  const param = /\s*([A-Za-z0-9!#$%&'*+.^_`|~-]+)\s*=\s*("(?:[^"\\]|\\.)*"|[^,\s]*)\s*(,|$)/y;
  while (pos < input.length) {
    scheme.lastIndex = pos;
    const s = scheme.exec(input);
    if (!s || s[1] === undefined) break;
    pos = scheme.lastIndex;
    const challenge: Challenge = { scheme: s[1].toLowerCase(), params: {} };
    for (;;) {
      param.lastIndex = pos;
      const p = param.exec(input);
      if (!p || p[1] === undefined || p[2] === undefined) break;
      // "Bearer realm=x, Basic realm=y": a token followed by a space, not "=", starts a new challenge.
      const raw = p[2];
      const value = raw.startsWith('"') ? raw.slice(1, -1).replace(/\\(.)/g, '$1') : raw;
      challenge.params[p[1].toLowerCase()] = value;
      pos = param.lastIndex;
    }
    challenges.push(challenge);
    while (pos < input.length && (input[pos] === ',' || input[pos] === ' ')) pos++;
  }
  return challenges;
}

export interface RegistryAuthOptions {
  credentials?: Credentials;
  timeoutMs: number;
  userAgent: string;
  now?: () => number;
}

interface CachedToken {
  token: string;
  expiresAt: number;
}

const MAX_TOKEN_RESPONSE_BYTES = 1024 * 1024;
const DEFAULT_TOKEN_SECONDS = 60;

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

export class RegistryAuth {
  readonly #credentials: Credentials | undefined;
  readonly #timeoutMs: number;
  readonly #userAgent: string;
  readonly #now: () => number;
  #basic = false;
  readonly #tokens = new Map<string, CachedToken>();
  /** access key (repository + access class) → the challenge key whose token it last needed */
  readonly #accessTokens = new Map<string, string>();
  /** Token requests under way by challenge key: concurrent challenges for one scope share one request. */
  readonly #fetching = new Map<string, Promise<CachedToken>>();
  /** Number of token requests made: observable for tests of the cache. */
  tokenRequests = 0;

  constructor(options: RegistryAuthOptions) {
    this.#credentials = options.credentials;
    this.#timeoutMs = options.timeoutMs;
    this.#userAgent = options.userAgent;
    this.#now = options.now ?? Date.now;
  }

  #basicHeader(): string | undefined {
    if (!this.#credentials || !('username' in this.#credentials)) return undefined;
    const { username, password } = this.#credentials;
    return `Basic ${Buffer.from(`${username}:${password}`, 'utf8').toString('base64')}`;
  }

  /** The Authorization header to send for this access key, if one is known. */
  authorization(accessKey: string): string | undefined {
    const key = this.#accessTokens.get(accessKey);
    const cached = key === undefined ? undefined : this.#tokens.get(key);
    if (cached && cached.expiresAt > this.#now()) return `Bearer ${cached.token}`;
    if (this.#basic) return this.#basicHeader();
    return undefined;
  }

  /**
   * Answer a 401 challenge. Resolves true when the request is worth retrying
   * with `authorization(accessKey)`, false when nothing more can be tried.
   */
  async respond(header: string | null, accessKey: string, detail: StorageErrorDetail): Promise<boolean> {
    if (header === null) return false;
    const challenges = parseChallenges(header);
    const bearer = challenges.find((c) => c.scheme === 'bearer');
    if (bearer) {
      const realm = bearer.params['realm'];
      if (realm === undefined) {
        throw new StorageError('PROTOCOL', `Bearer challenge without realm for ${detail.repository}`, { ...detail, challenge: header.slice(0, 300) });
      }
      const key = JSON.stringify([realm, bearer.params['service'] ?? '', bearer.params['scope'] ?? '']);
      const cached = this.#tokens.get(key);
      // A cached token that was just refused is stale: fetch a fresh one.
      if (cached && this.#accessTokens.get(accessKey) !== key && cached.expiresAt > this.#now()) {
        this.#accessTokens.set(accessKey, key);
        return true;
      }
      let fetching = this.#fetching.get(key);
      if (!fetching) {
        fetching = this.#fetchToken(realm, bearer.params['service'], bearer.params['scope'], detail).finally(() => this.#fetching.delete(key));
        this.#fetching.set(key, fetching);
      }
      this.#tokens.set(key, await fetching);
      this.#accessTokens.set(accessKey, key);
      return true;
    }
    if (challenges.some((c) => c.scheme === 'basic') && this.#credentials && 'identityToken' in this.#credentials) {
      throw new StorageError(
        'UNAUTHORIZED',
        `the registry asks for Basic auth for ${detail.repository || 'its API'}, but its credentials are an identity token (Docker's "<token>" user), which only token (Bearer) authentication can use; give a username and password instead`,
        detail,
      );
    }
    if (challenges.some((c) => c.scheme === 'basic') && this.#credentials && !this.#basic) {
      this.#basic = true;
      return true;
    }
    return false;
  }

  /**
   * The token request: a GET follows up to 5 redirects (never from https to http), as fetch did;
   * the OAuth2 POST follows none (its answer to a redirect is the status, refused below). The
   * Authorization header does not follow a redirect to another origin.
   */
  async #tokenRequest(url: URL, init: HttpRequestInit): Promise<HttpResponse> {
    let target = url;
    for (let hops = 0; ; hops++) {
      const response = await httpRequest(target, { ...init, signal: requestSignal(this.#timeoutMs) });
      const location = response.headers.get('location');
      if (init.method !== 'GET' || hops >= 5 || location === null || ![301, 302, 303, 307, 308].includes(response.status)) return response;
      const next = new URL(location, target);
      if (next.protocol !== 'https:' && !(next.protocol === 'http:' && target.protocol === 'http:')) return response;
      await response.cancel();
      // Credentials go to the token service's own origin only, as fetch does.
      if (next.origin !== target.origin && init.headers) {
        const { Authorization: _dropped, ...rest } = init.headers;
        init = { ...init, headers: rest };
      }
      target = next;
    }
  }

  async #fetchToken(realm: string, service: string | undefined, scope: string | undefined, detail: StorageErrorDetail): Promise<CachedToken> {
    let url: URL;
    try {
      url = new URL(realm);
    } catch (error) {
      throw new StorageError('PROTOCOL', `Bearer realm "${realm.slice(0, 200)}" is not a URL`, detail, { cause: error });
    }
    if (url.protocol !== 'https:' && url.protocol !== 'http:') {
      throw new StorageError('PROTOCOL', `Bearer realm ${url.protocol} is not http(s)`, detail);
    }
    const identityToken = this.#credentials && 'identityToken' in this.#credentials ? this.#credentials.identityToken : undefined;
    const headers: Record<string, string> = { 'User-Agent': this.#userAgent, Accept: 'application/json' };
    let init: HttpRequestInit;
    if (identityToken !== undefined) {
      // OAuth2 refresh-token grant (distribution's docs/spec/auth/oauth.md): a form POST; scopes space-separated.
      const form = new URLSearchParams({ grant_type: 'refresh_token', refresh_token: identityToken, client_id: OAUTH_CLIENT_ID });
      if (service !== undefined) form.set('service', service);
      const scopes = (scope ?? '').split(' ').filter((s) => s);
      if (scopes.length) form.set('scope', scopes.join(' '));
      headers['Content-Type'] = 'application/x-www-form-urlencoded';
      init = { method: 'POST', headers, body: form.toString() }; // the token never follows a redirect (httpRequest follows none)
    } else {
      if (service !== undefined) url.searchParams.set('service', service);
      if (scope !== undefined) for (const s of scope.split(' ')) if (s) url.searchParams.append('scope', s);
      const basic = this.#basicHeader();
      if (basic) headers['Authorization'] = basic;
      init = { method: 'GET', headers };
    }
    const method = identityToken !== undefined ? 'POST' : 'GET';
    this.tokenRequests++;
    let response: HttpResponse;
    try {
      response = await waitingFor(() => `${method} ${url.origin}${url.pathname} (registry token): no response headers yet`, () => this.#tokenRequest(url, init));
    } catch (error) {
      throw new StorageError('UNAVAILABLE', `token endpoint ${url.origin} unreachable for ${detail.repository}`, detail, { cause: error });
    }
    let body;
    try {
      body = await waitingFor(() => `${method} ${url.origin}${url.pathname} (registry token): reading the response body`, () => readBodyBounded(response, MAX_TOKEN_RESPONSE_BYTES));
    } catch (error) {
      throw new StorageError('UNAVAILABLE', `token endpoint ${url.origin} failed mid-response`, detail, { cause: error });
    }
    const refused = identityToken !== undefined ? 'the identity token' : this.#credentials ? 'the credentials' : 'anonymous access';
    if (response.status === 401 || response.status === 403 || (identityToken !== undefined && response.status === 400)) {
      // OAuth2 answers a bad or expired refresh token with 400 invalid_grant.
      throw new StorageError('UNAUTHORIZED', `token endpoint ${url.origin} refused ${refused} for ${detail.repository} (HTTP ${response.status})`, { ...detail, status: response.status });
    }
    if (identityToken !== undefined && (response.status === 404 || response.status === 405)) {
      throw new StorageError('UNAUTHORIZED', `token endpoint ${url.origin} does not take OAuth2 POSTs (HTTP ${response.status}), so it cannot use an identity token; give a username and password instead`, { ...detail, status: response.status });
    }
    if (response.status !== 200) {
      const code = response.status >= 500 || response.status === 429 ? 'UNAVAILABLE' : 'PROTOCOL';
      throw new StorageError(code, `token endpoint ${url.origin} answered HTTP ${response.status} for ${detail.repository}`, { ...detail, status: response.status });
    }
    if (body.kind === 'too-large') {
      throw new StorageError('TOO_LARGE', `token response from ${url.origin} is larger than ${MAX_TOKEN_RESPONSE_BYTES} bytes`, detail);
    }
    let parsed: unknown;
    try {
      parsed = JSON.parse(new TextDecoder().decode(body.bytes));
    } catch (error) {
      throw new StorageError('PROTOCOL', `token response from ${url.origin} is not JSON`, detail, { cause: error });
    }
    const token = isRecord(parsed) ? (parsed['token'] ?? parsed['access_token']) : undefined;
    if (typeof token !== 'string' || token.length === 0 || /[\r\n]/.test(token)) {
      throw new StorageError('PROTOCOL', `token response from ${url.origin} has no token`, detail);
    }
    const rawExpiry = isRecord(parsed) ? parsed['expires_in'] : undefined;
    const seconds = typeof rawExpiry === 'number' && rawExpiry > 0 ? rawExpiry : DEFAULT_TOKEN_SECONDS;
    // Renew a little early so a token does not expire in flight.
    const expiresAt = this.#now() + Math.max(1, seconds - Math.min(10, seconds / 10)) * 1000;
    return { token, expiresAt };
  }
}
