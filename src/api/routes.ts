/**
 * The service's routes, named once for the service (the Koa router, the read fast paths, the
 * metrics' route labels), its clients and the tools that call it. Patterns are in the router's
 * syntax: `*repo` is a repository name (slashes kept), `:file` one path segment. This module
 * imports nothing.
 */

export const ROUTES = {
  health: '/healthz',
  ready: '/readyz',
  metrics: '/metrics',
  onlineKeys: '/v1/online-keys',
  onlineKeyUsage: '/v1/online-keys/usage',
  rotateOnlineKeys: '/v1/online-keys/rotate',
  revokeOnlineKeys: '/v1/online-keys/revoke',
  repositories: '/v1/repos',
  repository: '/v1/repos/*repo',
  metadata: '/v1/repos/*repo/metadata/:file',
  status: '/v1/repos/*repo/status',
  nextOnlineKeys: '/v1/repos/*repo/online-keys',
  grants: '/v1/repos/*repo/grants',
  redeemGrant: '/v1/repos/*repo/grants/redeem',
  tags: '/v1/repos/*repo/tags',
  namespace: '/v1/namespace-of/*repo',
  syncNamespace: '/v1/namespace-sync/*repo',
  namespaceMembers: '/v1/namespace-members/*repo',
  migrate: '/v1/migrations/*repo',
} as const;

/**
 * `/v1/repos/<repo>/metadata/<file>` as a request target, the form the read fast paths answer:
 * group 1 the repository (still percent-encoded), group 2 the file name. No query.
 */
export const METADATA_PATH = /^\/v1\/repos\/(.+)\/metadata\/([A-Za-z0-9_.-]+)$/;

/**
 * Request paths: the routes above, filled in. A repository name goes in as it is (its slashes are
 * part of the route); a file name is percent-encoded.
 */
export const paths = {
  repository: (repo: string): string => `/v1/repos/${repo}`,
  metadata: (repo: string, fileName: string): string => `/v1/repos/${repo}/metadata/${encodeURIComponent(fileName)}`,
  status: (repo: string): string => `/v1/repos/${repo}/status`,
  nextOnlineKeys: (repo: string): string => `/v1/repos/${repo}/online-keys`,
  grants: (repo: string): string => `/v1/repos/${repo}/grants`,
  redeemGrant: (repo: string): string => `/v1/repos/${repo}/grants/redeem`,
  tags: (repo: string): string => `/v1/repos/${repo}/tags`,
  namespace: (repo: string): string => `/v1/namespace-of/${repo}`,
  syncNamespace: (repo: string): string => `/v1/namespace-sync/${repo}`,
  namespaceMembers: (anchor: string, page: { after?: string; limit?: number } = {}): string => {
    const query = [...(page.after !== undefined ? [`after=${encodeURIComponent(page.after)}`] : []), ...(page.limit !== undefined ? [`limit=${page.limit}`] : [])];
    return `/v1/namespace-members/${anchor}${query.length ? `?${query.join('&')}` : ''}`;
  },
  migrate: (repo: string): string => `/v1/migrations/${repo}`,
  onlineKeys: (repository?: string): string => (repository === undefined ? ROUTES.onlineKeys : `${ROUTES.onlineKeys}?repository=${encodeURIComponent(repository)}`),
} as const;
