/**
 * The members of a namespace, as the owner's commands act on them (`tufoci rotate root P/` with a
 * new targets key, `tufoci resign P/ --all-members`): read from the service's paged listing,
 * `GET /v1/namespace-members/<anchor>` (docs/API.md), one bounded page after another.
 *
 * Each page is a ServiceClient request, bounded to MAX_PAGE_BYTES; the pages are checked to follow
 * one another inside the namespace.
 */
import { paths } from '../api/routes.ts';
import type { NamespaceMembers } from '../api/types.ts';
import { ServiceClient, ServiceClientError } from '../client/service-client.ts';
import { anchorPrefix } from '../engine/scope.ts';
import { isRepositoryName } from '../storage/names.ts';
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
  const client = new ServiceClient({ ...serviceEndpoint(values), timeoutMs, maxBytes: MAX_PAGE_BYTES });
  const listing: MemberListing = { namespace: prefix, rootVersion: 0, members: [], unreadable: [] };
  let after: string | undefined;
  for (;;) {
    const query = { ...(after !== undefined ? { after } : {}), limit: PAGE_LIMIT };
    const path = paths.namespaceMembers(anchor, query);
    const page = await client.namespaceMembers(anchor, query);
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
