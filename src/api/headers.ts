/**
 * HTTP names the service and its clients share. This module imports nothing, so the client
 * can name them without loading any of the service.
 */

/**
 * Response header of `timestamp.json` (200 and 304): the version of the root
 * in the head that timestamp belongs to. A hint for clients (src/client/
 * service-fetcher.ts): it lets them skip the `<N+1>.root.json` probe. Clients
 * never trust it for anything else (docs/ARCHITECTURE.md, "Client fetch
 * efficiency").
 */
export const ROOT_VERSION_HEADER = 'Tufoci-Root-Version';
