import { writeFile } from 'node:fs/promises';
import { describe, expect, it } from 'vitest';
import { RegistryStore } from '../../src/storage/registry-store.ts';
import { assertRegistryBinary, startRegistry } from '../support/registry-server.ts';
import { storeContract } from './contract.ts';

storeContract('registry (docker-registry 2.8, real process)', async () => {
  const registry = await startRegistry();
  // Small thresholds so the 3 MiB contract blob goes through the chunked (POST, PATCH…, PUT) upload,
  // and a small page size so listing asks for pages (distribution 2.8 answers all tags at once anyway).
  const store = new RegistryStore({ url: registry.url, chunkedUploadThreshold: 1024 * 1024, chunkSize: 512 * 1024, tagsPageSize: 5, timeoutMs: 10_000 });
  return {
    store,
    canDeleteTag: false,
    corrupt: async (_repository, digest, bytes) => writeFile(registry.blobDataPath(digest), bytes),
    close: () => registry.stop(),
  };
});

describe('registry test support', () => {
  it('fails (never skips) when docker-registry is missing, saying how to install it', () => {
    expect(() => assertRegistryBinary('/nonexistent/docker-registry')).toThrow(/docker-registry.*apt-get install docker-registry/);
    expect(() => assertRegistryBinary()).not.toThrow();
  });
});
