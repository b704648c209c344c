/** Push a small real image (config, one tar layer, manifest) to a Store, no Docker needed: the demo's image, `content` defaulting to the tag. */
import { pushImage as pushRealImage, type PushedImage } from '../../src/demo/image.ts';
import type { Store } from '../../src/storage/index.ts';

export type { PushedImage };

export function pushImage(store: Store, repository: string, tag: string, content = tag): Promise<PushedImage> {
  return pushRealImage(store, repository, tag, content);
}
