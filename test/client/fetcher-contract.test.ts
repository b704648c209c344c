/**
 * The fetcher contract (fetcher-contract.ts) over both fetchers:
 * - RegistryFetcher: a real docker-registry, the files stored by MetadataStore (as the service
 *   stores them), requests counted at an HTTP proxy in front of the registry;
 * - ServiceFetcher: an HTTP server answering `GET /v1/repos/<repo>/metadata/<file>` with the
 *   headers of src/api's metadataHeaders (what every read path of the service sends: ETag, 304 on
 *   If-None-Match, Tufoci-Root-Version on timestamp.json). test/service/metadata-headers.test.ts
 *   holds the service's three read paths to that function.
 */
import { createServer } from 'node:http';
import { metadataHeaders } from '../../src/api/headers.ts';
import { paths } from '../../src/api/routes.ts';
import { RegistryFetcher, metadataBaseUrl } from '../../src/client/registry-fetcher.ts';
import { ServiceFetcher, etagOf } from '../../src/client/service-fetcher.ts';
import { MetadataStore, RegistryStore } from '../../src/storage/index.ts';
import { freeLoopbackPort, startRegistry } from '../support/registry-server.ts';
import { startCountingProxy } from './counting-proxy.ts';
import { CONTRACT_REPO, fetcherContract, type FetcherWorld } from './fetcher-contract.ts';

/** The file name a request was for (a blob read shows as `blob`). */
function fileOf(path: string): string {
  if (path.includes('/blobs/')) return 'blob';
  return decodeURIComponent(path.slice(path.lastIndexOf('/') + 1));
}

fetcherContract('RegistryFetcher over docker-registry', async (): Promise<FetcherWorld> => {
  const registry = await startRegistry();
  const proxy = await startCountingProxy(registry.url);
  const direct = new MetadataStore({ store: new RegistryStore({ url: registry.url }) });
  return {
    baseUrl: metadataBaseUrl(CONTRACT_REPO),
    async publish(files, rootVersion) {
      await direct.publish(CONTRACT_REPO, [...files].map(([fileName, bytes]) => ({ fileName, bytes })), { rootVersion });
    },
    // A new MetadataStore per fetcher, as a new process has.
    fetcher: (options = {}) => new RegistryFetcher({ metadata: new MetadataStore({ store: new RegistryStore({ url: proxy.url }) }), ...options }),
    async unreachable() {
      const port = await freeLoopbackPort();
      return { fetcher: new RegistryFetcher({ metadata: new MetadataStore({ store: new RegistryStore({ url: `http://127.0.0.1:${port}`, retries: 0 }) }) }), baseUrl: metadataBaseUrl(CONTRACT_REPO) };
    },
    requested: () => proxy.requests.map((r) => fileOf(r.path)),
    reset: () => proxy.reset(),
    async close() {
      await proxy.close();
      await registry.stop();
    },
  };
});

fetcherContract('ServiceFetcher over the service protocol', async (): Promise<FetcherWorld> => {
  const files = new Map<string, Uint8Array>();
  let rootVersion = 1;
  const prefix = paths.metadata(CONTRACT_REPO, '');
  const server = createServer((req, res) => {
    const path = req.url ?? '';
    const bytes = req.method === 'GET' && path.startsWith(prefix) ? files.get(decodeURIComponent(path.slice(prefix.length))) : undefined;
    if (!bytes) {
      res.writeHead(404, { 'Content-Type': 'application/json' }).end(JSON.stringify({ error: { code: 'NOT_FOUND', message: `${path} not found` } }));
      return;
    }
    const file = { bytes, etag: etagOf(bytes), immutable: !path.endsWith('/timestamp.json') };
    const notModified = req.headers['if-none-match'] === file.etag;
    res.statusCode = notModified ? 304 : 200;
    metadataHeaders(res, file, rootVersion, notModified);
    res.end(notModified ? undefined : Buffer.from(bytes));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const proxy = await startCountingProxy(`http://127.0.0.1:${(server.address() as { port: number }).port}`);
  const base = (url: string): string => `${url}${prefix.replace(/\/$/, '')}`;
  return {
    baseUrl: base(proxy.url),
    async publish(added, version) {
      for (const [name, bytes] of added) files.set(name, bytes);
      rootVersion = version;
    },
    fetcher: (options = {}) => new ServiceFetcher({ ...options }),
    async unreachable() {
      const port = await freeLoopbackPort();
      return { fetcher: new ServiceFetcher({ retries: 0 }), baseUrl: base(`http://127.0.0.1:${port}`) };
    },
    requested: () => proxy.requests.map((r) => fileOf(r.path)),
    reset: () => proxy.reset(),
    async close() {
      await proxy.close();
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
});
