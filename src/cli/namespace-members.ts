/**
 * The members of a namespace, as the owner's commands act on them (`tufoci rotate root P/` with a
 * new targets key, `tufoci resign P/ --all-members`): read from the service's paged listing,
 * `GET /v1/namespace-members/<anchor>` (docs/API.md), one bounded page after another.
 *
 * The request is made here with the same bounds and error answers as ServiceClient's (a time
 * limit, a size limit, no redirect followed, the service's JSON refusal as a ServiceClientError):
 * ServiceClient has no method for this route.
 */
import { paths } from '../api/routes.ts';
import type { NamespaceMembers } from '../api/types.ts';
import { ServiceClientError } from '../client/service-client.ts';
import { anchorPrefix } from '../engine/scope.ts';
import { httpRequest, type HttpResponse } from '../storage/http-client.ts';
import { isRepositoryName } from '../storage/names.ts';
import { describeTlsFailure } from '../storage/tls.ts';
import { serviceEndpoint } from './common.ts';

/** Repositories asked for per page (the service looks at up to 1,000). */
const PAGE_LIMIT = 200;
/** Bound of one page's answer. */
const MAX_PAGE_BYTES = 4 * 1024 * 1024;

export interface MemberListing {
  namespace: string;
  rootVersion: number;
  members: string[];
  unreadable: NamespaceMembers['unreadable'];
}

/** Every member of the namespace anchored at `anchor`, in name order, and the repositories under it the service could not read. */
export async function namespaceMembers(values: { server?: string | undefined; token?: string | undefined }, anchor: string, timeoutMs = 60_000): Promise<MemberListing> {
  const prefix = anchorPrefix(anchor);
  if (prefix === undefined) throw new TypeError(`${anchor} is not a namespace anchor`);
  const { url, token } = serviceEndpoint(values);
  const listing: MemberListing = { namespace: prefix, rootVersion: 0, members: [], unreadable: [] };
  let after: string | undefined;
  for (;;) {
    const path = paths.namespaceMembers(anchor, { ...(after !== undefined ? { after } : {}), limit: PAGE_LIMIT });
    const page = await getJson(url.replace(/\/+$/, ''), token, path, timeoutMs);
    const names = [...page.members, ...page.unreadable.map((u) => u.repository)];
    const wrong = names.find((n) => !(n.startsWith(prefix) && n !== anchor && isRepositoryName(n) && (after === undefined || n > after)));
    if (wrong !== undefined || (page.next !== undefined && !(after === undefined || page.next > after))) {
      throw new ServiceClientError(200, 'PROTOCOL', `GET ${path} answered a page that is not of ${prefix} after ${after ?? 'its start'}`, { path });
    }
    listing.rootVersion = page.rootVersion;
    listing.members.push(...page.members);
    listing.unreadable.push(...page.unreadable);
    if (page.next === undefined) return listing;
    after = page.next;
  }
}

async function getJson(base: string, token: string | undefined, path: string, timeoutMs: number): Promise<NamespaceMembers> {
  let response: HttpResponse;
  try {
    response = await httpRequest(new URL(`${base}${path}`), { method: 'GET', headers: token ? { authorization: `Bearer ${token}` } : {}, signal: AbortSignal.timeout(timeoutMs) });
  } catch (cause) {
    const tls = describeTlsFailure(cause, base, { plain: 'for a service on plain HTTP, an http:// URL' });
    throw new ServiceClientError(0, 'UNREACHABLE', `cannot reach the tufoci service at ${base}${tls ? `: ${tls}` : ''}`, { url: base }, cause);
  }
  if (response.status >= 300 && response.status < 400) {
    await response.cancel();
    throw new ServiceClientError(response.status, 'HTTP_ERROR', `GET ${path} answered ${response.status} (a redirect: the service is never followed elsewhere)`, { path });
  }
  const chunks: Uint8Array[] = [];
  let size = 0;
  for await (const chunk of response.body ?? []) {
    size += chunk.byteLength;
    if (size > MAX_PAGE_BYTES) throw new ServiceClientError(response.status, 'TOO_LARGE', `response from ${path} exceeds ${MAX_PAGE_BYTES} bytes`, { path });
    chunks.push(chunk);
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(Buffer.concat(chunks).toString('utf8'));
  } catch {
    parsed = undefined;
  }
  if (response.status >= 400) {
    const err = (parsed as { error?: { code?: unknown; message?: unknown; detail?: unknown } } | undefined)?.error;
    if (err && typeof err.code === 'string' && typeof err.message === 'string') {
      throw new ServiceClientError(response.status, err.code, err.message, typeof err.detail === 'object' && err.detail !== null ? (err.detail as Record<string, unknown>) : {});
    }
    throw new ServiceClientError(response.status, 'HTTP_ERROR', `GET ${path} answered ${response.status}`, { path });
  }
  const page = parsed as Partial<NamespaceMembers> | undefined;
  const strings = (v: unknown): v is string[] => Array.isArray(v) && v.every((x) => typeof x === 'string');
  if (
    !page ||
    typeof page.rootVersion !== 'number' ||
    !strings(page.members) ||
    !Array.isArray(page.unreadable) ||
    !page.unreadable.every((u) => typeof u?.repository === 'string' && typeof u.error === 'string') ||
    (page.next !== undefined && typeof page.next !== 'string')
  ) {
    throw new ServiceClientError(response.status, 'PROTOCOL', `GET ${path} did not answer a page of members`, { path });
  }
  return page as NamespaceMembers;
}
