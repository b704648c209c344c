/**
 * A tiny HTTP server speaking just enough of the distribution API to test how
 * the registry client handles a registry that misbehaves (a real registry
 * will not serve wrong digests, HTML, endless bodies or redirect loops).
 * Tests install an `intercept` to misbehave on chosen requests; everything
 * else falls through to a minimal in-memory registry (blobs, monolithic and
 * chunked uploads, manifests, tags). Every request is recorded.
 */
import { createHash, randomUUID } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';

export interface RecordedRequest {
  method: string;
  url: string;
  headers: IncomingMessage['headers'];
  body: Buffer;
}

/** Return true when the request was answered. */
export type Intercept = (request: RecordedRequest, response: ServerResponse) => boolean | Promise<boolean>;

export interface FakeRegistry {
  url: string;
  requests: RecordedRequest[];
  intercept: Intercept | undefined;
  blobs: Map<string, Buffer>;
  manifests: Map<string, { bytes: Buffer; mediaType: string }>;
  /** `repository:tag` → digest */
  tags: Map<string, string>;
  stop(): Promise<void>;
}

const digestOf = (bytes: Buffer): string => `sha256:${createHash('sha256').update(bytes).digest('hex')}`;

function json(response: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
  const bytes = Buffer.from(JSON.stringify(body));
  response.writeHead(status, { 'Content-Type': 'application/json', 'Content-Length': String(bytes.byteLength), ...headers });
  response.end(bytes);
}

export function registryError(response: ServerResponse, status: number, code: string, message: string): void {
  json(response, status, { errors: [{ code, message }] });
}

export async function startFakeRegistry(): Promise<FakeRegistry> {
  const uploads = new Map<string, Buffer[]>();
  const state: Omit<FakeRegistry, 'url' | 'stop'> = {
    requests: [],
    intercept: undefined,
    blobs: new Map(),
    manifests: new Map(),
    tags: new Map(),
  };

  function fallback(request: RecordedRequest, response: ServerResponse): void {
    const url = new URL(request.url, 'http://fake');
    const path = url.pathname;
    if (path === '/v2/') return json(response, 200, {});
    let m = /^\/v2\/(.+)\/blobs\/uploads\/$/.exec(path);
    if (m && request.method === 'POST') {
      const id = randomUUID();
      uploads.set(id, []);
      response.writeHead(202, { Location: `/v2/${m[1]}/blobs/uploads/${id}?_state=s0`, 'Content-Length': '0' });
      return void response.end();
    }
    m = /^\/v2\/(.+)\/blobs\/uploads\/([0-9a-f-]+)$/.exec(path);
    if (m && m[2] !== undefined) {
      const parts = uploads.get(m[2]);
      if (!parts) return registryError(response, 404, 'BLOB_UPLOAD_UNKNOWN', 'unknown upload');
      if (request.body.byteLength > 0) parts.push(request.body);
      const size = parts.reduce((n, p) => n + p.byteLength, 0);
      if (request.method === 'PATCH') {
        response.writeHead(202, { Location: `/v2/${m[1]}/blobs/uploads/${m[2]}?_state=s${size}`, Range: `0-${size - 1}`, 'Content-Length': '0' });
        return void response.end();
      }
      if (request.method === 'PUT') {
        const bytes = Buffer.concat(parts);
        const digest = digestOf(bytes);
        if (url.searchParams.get('digest') !== digest) return registryError(response, 400, 'DIGEST_INVALID', 'digest mismatch');
        state.blobs.set(digest, bytes);
        uploads.delete(m[2]);
        response.writeHead(201, { 'Docker-Content-Digest': digest, Location: `/v2/${m[1]}/blobs/${digest}`, 'Content-Length': '0' });
        return void response.end();
      }
    }
    m = /^\/v2\/(.+)\/blobs\/(sha256:[a-f0-9]{64})$/.exec(path);
    if (m && m[2] !== undefined) {
      const bytes = state.blobs.get(m[2]);
      if (!bytes) return registryError(response, 404, 'BLOB_UNKNOWN', 'blob unknown');
      response.writeHead(200, { 'Content-Type': 'application/octet-stream', 'Content-Length': String(bytes.byteLength), 'Docker-Content-Digest': m[2] });
      return void response.end(request.method === 'HEAD' ? undefined : bytes);
    }
    m = /^\/v2\/(.+)\/manifests\/([^/]+)$/.exec(path);
    if (m && m[1] !== undefined && m[2] !== undefined) {
      const [, repo, reference] = m;
      if (request.method === 'PUT') {
        const digest = digestOf(request.body);
        state.manifests.set(digest, { bytes: request.body, mediaType: String(request.headers['content-type']) });
        if (!reference.startsWith('sha256:')) state.tags.set(`${repo}:${reference}`, digest);
        response.writeHead(201, { 'Docker-Content-Digest': digest, 'Content-Length': '0' });
        return void response.end();
      }
      const digest = reference.startsWith('sha256:') ? reference : state.tags.get(`${repo}:${reference}`);
      const manifest = digest === undefined ? undefined : state.manifests.get(digest);
      if (!manifest || digest === undefined) return registryError(response, 404, 'MANIFEST_UNKNOWN', 'manifest unknown');
      response.writeHead(200, { 'Content-Type': manifest.mediaType, 'Content-Length': String(manifest.bytes.byteLength), 'Docker-Content-Digest': digest });
      return void response.end(request.method === 'HEAD' ? undefined : manifest.bytes);
    }
    m = /^\/v2\/(.+)\/tags\/list$/.exec(path);
    if (m) {
      const prefix = `${m[1]}:`;
      const tags = [...state.tags.keys()].filter((k) => k.startsWith(prefix)).map((k) => k.slice(prefix.length));
      if (tags.length === 0) return registryError(response, 404, 'NAME_UNKNOWN', 'repository name not known to registry');
      return json(response, 200, { name: m[1], tags });
    }
    registryError(response, 404, 'NOT_FOUND', `no route for ${request.method} ${path}`);
  }

  const server: Server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (chunk: Buffer) => chunks.push(chunk));
    req.on('end', () => {
      const recorded: RecordedRequest = { method: req.method ?? '', url: req.url ?? '', headers: req.headers, body: Buffer.concat(chunks) };
      state.requests.push(recorded);
      void (async () => {
        try {
          if (state.intercept && (await state.intercept(recorded, res))) return;
          fallback(recorded, res);
        } catch (error) {
          if (!res.headersSent) res.writeHead(500);
          res.end(String(error));
        }
      })();
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const address = server.address();
  if (address === null || typeof address === 'string') throw new Error('no address');
  const fake: FakeRegistry = Object.assign(state, {
    url: `http://127.0.0.1:${address.port}`,
    stop: async () => {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  });
  return fake;
}
