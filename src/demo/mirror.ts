/**
 * acme-rockets' mirror of wabbit-networks, with skopeo: the image tag, its signature referrers
 * (the `sha256-<hex>` tag), and `R/tuf` from the service's OCI layout (`oci:` transport): the
 * versioned files the mirror lacks first (they are immutable), `timestamp.json` last
 * (docs/FORMAT.md §5's order).
 */
import { join } from 'node:path';
import { OciLayoutStore, RegistryStore, parseMetadataFileName } from '../storage/index.ts';
import { DemoFailure } from './narrator.ts';
import { REPO, TUF_REPO } from './parties.ts';
import type { RegistryProcess } from './registry-process.ts';
import { OnStage } from './stage.ts';

const SKOPEO = '/usr/bin/skopeo';

export class Mirror extends OnStage {

  async #skopeo(src: string, dest: string, preserveDigests = true): Promise<void> {
    const args = ['copy', '--all', ...(preserveDigests ? ['--preserve-digests'] : []), ...(src.startsWith('oci:') ? [] : ['--src-tls-verify=false']), '--dest-tls-verify=false', src, dest];
    const r = await this.stage.exec(SKOPEO, ['--insecure-policy', ...args], this.stage.tmp, { ...process.env });
    if (r.code !== 0) throw new DemoFailure(`skopeo ${args.join(' ')} failed (exit ${r.code}): ${r.stderr.trim()}`);
  }

  /** The service's OCI layout of a repository's metadata. */
  #layoutDir(repository: string): string {
    return join(this.stage.layoutRoot, ...`${repository}/tuf`.split('/'));
  }

  /** The metadata files of R/tuf in the service's layout that `acme` does not have yet (timestamp.json aside). */
  async #missing(acme: RegistryProcess): Promise<string[]> {
    const layout = new OciLayoutStore({ root: this.stage.layoutRoot });
    const have = new Set(await new RegistryStore({ url: acme.url }).listTags(TUF_REPO));
    return (await layout.listTags(TUF_REPO)).filter((t) => parseMetadataFileName(t) !== undefined && t !== 'timestamp.json' && !have.has(t));
  }

  async #copyTuf(acme: RegistryProcess, file: string): Promise<void> {
    await this.#skopeo(`oci:${this.#layoutDir(REPO)}:${file}`, `docker://${acme.host}/${TUF_REPO}:${file}`);
  }

  /**
   * Mirror to acme-rockets: the image tag, its signature referrers (the
   * `sha256-<hex>` tag: an index skopeo copies with every signature
   * manifest), and every metadata file of `R/tuf` the mirror does not have
   * yet (versioned files are immutable), `timestamp.json` last. Told step by
   * step; returns the metadata files in copy order.
   */
  async all(wabbit: RegistryProcess, acme: RegistryProcess, digest: string): Promise<string[]> {
    const image = `${REPO}:v1`;
    const sigTag = `${REPO}:${digest.replace(':', '-')}`;
    this.narrator.note(`$ skopeo copy --all --preserve-digests docker://${wabbit.host}/${image} docker://${acme.host}/${image}`);
    await this.#skopeo(`docker://${wabbit.host}/${image}`, `docker://${acme.host}/${image}`);
    // skopeo 1.9 cannot keep this OCI 1.1 index byte for byte (it drops the descriptors' artifactType);
    // the signature manifests themselves are copied unchanged (docs/FORMAT.md §8).
    this.narrator.note(`$ skopeo copy --all docker://${wabbit.host}/${sigTag} docker://${acme.host}/${sigTag}`);
    await this.#skopeo(`docker://${wabbit.host}/${sigTag}`, `docker://${acme.host}/${sigTag}`, false);
    const versioned = await this.#missing(acme);
    const order = [...versioned.sort((a, b) => Number(a.split('.')[0]) - Number(b.split('.')[0])), 'timestamp.json'];
    for (const file of order) await this.#copyTuf(acme, file);
    this.narrator.note(`$ skopeo copy --all --preserve-digests oci:$DATA/oci/${TUF_REPO}:<file> docker://${acme.host}/${TUF_REPO}:<file>`);
    this.narrator.note(`  for ${order.length} files: ${order.join(' ')}`);
    return order;
  }

  /** Only R/tuf (new versioned files, then timestamp.json), quietly. */
  async tuf(acme: RegistryProcess): Promise<void> {
    for (const file of [...(await this.#missing(acme)), 'timestamp.json']) await this.#copyTuf(acme, file);
  }
}
