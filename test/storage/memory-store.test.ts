import { MemoryStore } from '../../src/storage/memory-store.ts';
import { storeContract } from './contract.ts';

storeContract('memory', async () => {
  const store = new MemoryStore();
  return {
    store,
    canDeleteTag: true,
    corrupt: async (repository, digest, bytes) => store.corruptBlobForTesting(repository, digest, bytes),
  };
});
