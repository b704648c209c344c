/**
 * An HTTP client for the tufoci service API (docs/API.md): used by the CLI.
 * Every response is bounded in size and time; errors come back as
 * `ServiceClientError` carrying the service's error code, message and detail.
 */
import { TufociError } from '../errors.ts';
import type { TufKeyJson } from '../keys/tuf-key.ts';

export class ServiceClientError extends TufociError<string> {
  readonly status: number;
  constructor(status: number, code: string, message: string, detail: Record<string, unknown> = {}, cause?: unknown) {
    super(code, message, { detail, ...(cause === undefined ? {} : { cause }) });
    this.status = status;
  }
}

export interface ServiceClientOptions {
  url: string;
  token?: string;
  timeoutMs?: number;
  maxBytes?: number;
}

export type { KeySetSummary, ListedKey, NextOnlineKeys, OnlineKeys, OnlineKeyUsage, RevokeOnlineKeysResult, RotateOnlineKeysResult } from '../api/types.ts';
export type { RoleStatus, RepositoryStatus, TagsResult, UploadResult } from '../api/types.ts';
export type { GrantInfo, JobInfo } from '../api/types.ts';
import { ROUTES, paths } from '../api/routes.ts';
import type {
  NamespaceInfo,
  NamespaceMembers,
  NamespaceSync,
  GrantInfo,
  JobInfo,
  NextOnlineKeys,
  OnlineKeys,
  OnlineKeyUsage,
  RepositoryStatus,
  RevokeOnlineKeysResult,
  RotateOnlineKeysResult,
  TagsResult,
  UploadResult,
} from '../api/types.ts';
import type { ImageTarget } from '../engine/build.ts';
import { httpRequest, type HttpHeaders, type HttpResponse } from '../storage/http-client.ts';
import { describeTlsFailure } from '../storage/tls.ts';

export class ServiceClient {
  readonly url: string;
  readonly #token: string | undefined;
  readonly #timeoutMs: number;
  readonly #maxBytes: number;

  constructor(opts: ServiceClientOptions) {
    this.url = opts.url.replace(/\/+$/, '');
    this.#token = opts.token;
    this.#timeoutMs = opts.timeoutMs ?? 30_000;
    this.#maxBytes = opts.maxBytes ?? 64 * 1024 * 1024;
  }

  async #request(method: string, path: string, body?: Uint8Array | string): Promise<{ status: number; bytes: Uint8Array; headers: HttpHeaders }> {
    const headers: Record<string, string> = {};
    if (this.#token) headers['authorization'] = `Bearer ${this.#token}`;
    if (body !== undefined) headers['content-type'] = 'application/json';
    let response: HttpResponse;
    try {
      response = await httpRequest(new URL(`${this.url}${path}`), { method, headers, ...(body !== undefined ? { body } : {}), signal: AbortSignal.timeout(this.#timeoutMs) });
    } catch (cause) {
      const tls = describeTlsFailure(cause, this.url, { plain: 'for a service on plain HTTP, an http:// URL' });
      throw new ServiceClientError(0, 'UNREACHABLE', `cannot reach the tufoci service at ${this.url}${tls ? `: ${tls}` : ''}`, { url: this.url }, cause);
    }
    if (response.status >= 300 && response.status < 400) {
      await response.cancel();
      throw new ServiceClientError(response.status, 'HTTP_ERROR', `${method} ${path} answered ${response.status} (a redirect: the service is never followed elsewhere)`, { path });
    }
    const chunks: Uint8Array[] = [];
    let size = 0;
    if (response.body) {
      for await (const chunk of response.body) {
        size += chunk.byteLength;
        if (size > this.#maxBytes) {
          throw new ServiceClientError(response.status, 'TOO_LARGE', `response from ${path} exceeds ${this.#maxBytes} bytes`, { path });
        }
        chunks.push(chunk);
      }
    }
    const bytes = new Uint8Array(Buffer.concat(chunks));
    if (response.status >= 400) {
      let parsed: unknown;
      try {
        parsed = JSON.parse(new TextDecoder().decode(bytes));
      } catch {
        parsed = undefined;
      }
      const err = (parsed as { error?: { code?: unknown; message?: unknown; detail?: unknown } } | undefined)?.error;
      if (err && typeof err.code === 'string' && typeof err.message === 'string') {
        const detail = typeof err.detail === 'object' && err.detail !== null ? (err.detail as Record<string, unknown>) : {};
        const retryAfter = response.headers.get('retry-after');
        throw new ServiceClientError(response.status, err.code, err.message, retryAfter ? { ...detail, retryAfterSeconds: Number(retryAfter) } : detail);
      }
      throw new ServiceClientError(response.status, 'HTTP_ERROR', `${method} ${path} answered ${response.status}`, { path });
    }
    return { status: response.status, bytes, headers: response.headers };
  }

  async #json<T>(method: string, path: string, body?: Uint8Array | string): Promise<T> {
    const r = await this.#request(method, path, body);
    try {
      return JSON.parse(new TextDecoder().decode(r.bytes)) as T;
    } catch (cause) {
      throw new ServiceClientError(r.status, 'PROTOCOL', `${method} ${path} did not answer JSON`, { path }, cause);
    }
  }

  /** The current online keys; a repository's own keys when `repository` is given (derived key sets). */
  onlineKeys(repository?: string): Promise<OnlineKeys> {
    return this.#json('GET', paths.onlineKeys(repository));
  }

  async repositories(): Promise<string[]> {
    return (await this.#json<{ repositories: string[] }>('GET', ROUTES.repositories)).repositories;
  }

  status(repo: string): Promise<RepositoryStatus> {
    return this.#json('GET', paths.status(repo));
  }

  async metadata(repo: string, fileName: string): Promise<Uint8Array> {
    return (await this.#request('GET', paths.metadata(repo, fileName))).bytes;
  }

  create(repo: string, root: Uint8Array, targets: Uint8Array): Promise<UploadResult> {
    const decode = (b: Uint8Array): unknown => JSON.parse(new TextDecoder().decode(b));
    return this.#json('POST', paths.repository(repo), JSON.stringify({ root: decode(root), targets: decode(targets) }));
  }

  /** Create `repo` as a member of the namespace covering it, from its 1.targets.json alone. */
  createMember(repo: string, targets: Uint8Array): Promise<UploadResult & { namespace: string }> {
    return this.#json('POST', paths.repository(repo), JSON.stringify({ targets: JSON.parse(new TextDecoder().decode(targets)) as unknown }));
  }

  /** Move `repo` into the namespace `root` (its next root) names as successor, with `targets` as a member's. */
  migrate(repo: string, root: Uint8Array, targets: Uint8Array): Promise<UploadResult & { namespace: string }> {
    const decode = (b: Uint8Array): unknown => JSON.parse(new TextDecoder().decode(b));
    return this.#json('POST', paths.migrate(repo), JSON.stringify({ root: decode(root), targets: decode(targets) }));
  }

  /** The namespace covering `repo` (404 NO_NAMESPACE when none does). */
  namespaceOf(repo: string): Promise<NamespaceInfo> {
    return this.#json('GET', paths.namespace(repo));
  }

  /** One page of the members of the namespace anchored at `anchor` (GET /v1/namespace-members), its shape checked. */
  async namespaceMembers(anchor: string, page: { after?: string; limit?: number } = {}): Promise<NamespaceMembers> {
    const path = paths.namespaceMembers(anchor, page);
    const p = await this.#json<Partial<NamespaceMembers> | null>('GET', path);
    const strings = (v: unknown): v is string[] => Array.isArray(v) && v.every((x) => typeof x === 'string');
    if (
      !p ||
      typeof p.rootVersion !== 'number' ||
      !strings(p.members) ||
      !Array.isArray(p.unreadable) ||
      !p.unreadable.every((u) => typeof u?.repository === 'string' && typeof u.error === 'string') ||
      (p.next !== undefined && typeof p.next !== 'string')
    ) {
      throw new ServiceClientError(200, 'PROTOCOL', `GET ${path} did not answer a page of members`, { path });
    }
    return p as NamespaceMembers;
  }

  /** Bring every member of the namespace anchored at `anchor` up to its root. */
  syncNamespace(anchor: string): Promise<NamespaceSync> {
    return this.#json('POST', paths.syncNamespace(anchor), '{}');
  }

  upload(repo: string, fileName: string, bytes: Uint8Array): Promise<UploadResult> {
    return this.#json('PUT', paths.metadata(repo, fileName), bytes);
  }

  /** Publish tags into `role`, a role the owner delegated to the service's CI key: the service signs it. */
  publishTags(repo: string, role: string, tags: Record<string, ImageTarget>): Promise<TagsResult> {
    return this.#json('POST', paths.tags(repo), JSON.stringify({ role, tags }));
  }

  /** The same client presenting another bearer token (a CI job's grant token). */
  withToken(token: string): ServiceClient {
    return new ServiceClient({ url: this.url, token, timeoutMs: this.#timeoutMs, maxBytes: this.#maxBytes });
  }

  /** The online keys the repository's next root should list (a new set when it already lists the current one). */
  nextOnlineKeys(repo: string): Promise<NextOnlineKeys> {
    return this.#json('POST', paths.nextOnlineKeys(repo), '{}');
  }

  onlineKeyUsage(): Promise<OnlineKeyUsage> {
    return this.#json('GET', ROUTES.onlineKeyUsage);
  }

  rotateOnlineKeys(): Promise<RotateOnlineKeysResult> {
    return this.#json('POST', ROUTES.rotateOnlineKeys, '{}');
  }

  revokeOnlineKeys(ref: string, reason: string): Promise<RevokeOnlineKeysResult> {
    return this.#json('POST', ROUTES.revokeOnlineKeys, JSON.stringify({ key: ref, reason }));
  }

  createGrant(repo: string, opts: { paths: string[]; ttlSeconds: number; role?: string }): Promise<GrantInfo> {
    return this.#json('POST', paths.grants(repo), JSON.stringify(opts));
  }

  /** Redeem a grant (this client's token must be the grant token) for `key`. */
  redeemGrant(repo: string, key: TufKeyJson): Promise<JobInfo> {
    return this.#json('POST', paths.redeemGrant(repo), JSON.stringify({ key }));
  }
}
