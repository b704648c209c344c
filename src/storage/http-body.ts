/**
 * Reading HTTP response bodies with a hard bound: a declared Content-Length
 * above the bound is refused before reading, and a body that streams past it
 * (chunked, lying or endless) is cut off at the bound and the connection
 * released. Nothing here allocates more than `maxBytes` plus one chunk.
 */
import type { HttpResponse } from './http-client.ts';

export type BoundedBody = { kind: 'ok'; bytes: Uint8Array } | { kind: 'too-large'; declared?: number };

export async function readBodyBounded(response: HttpResponse, maxBytes: number): Promise<BoundedBody> {
  const declared = response.headers.get('content-length');
  if (declared !== null && /^[0-9]+$/.test(declared) && Number(declared) > maxBytes) {
    await discardBody(response);
    return { kind: 'too-large', declared: Number(declared) };
  }
  if (response.body === null) return { kind: 'ok', bytes: new Uint8Array(0) };
  const chunks: Uint8Array[] = [];
  let total = 0;
  // Leaving the loop early (the bound, or an error) destroys the stream: the connection is released.
  for await (const chunk of response.body) {
    total += chunk.byteLength;
    if (total > maxBytes) return { kind: 'too-large' };
    chunks.push(chunk);
  }
  if (chunks.length === 1 && chunks[0] !== undefined) return { kind: 'ok', bytes: chunks[0] };
  const bytes = new Uint8Array(total);
  let offset = 0;
  for (const chunk of chunks) {
    bytes.set(chunk, offset);
    offset += chunk.byteLength;
  }
  return { kind: 'ok', bytes };
}

/** Release a response we will not read, so its connection can be reused or closed. */
export async function discardBody(response: HttpResponse): Promise<void> {
  if (response.body !== null && !response.bodyUsed) await response.cancel().catch(() => undefined);
}

/** The media type of a Content-Type header, lowercased, without parameters. */
export function mediaTypeOf(contentType: string | null): string {
  return (contentType ?? '').split(';')[0]!.trim().toLowerCase();
}
