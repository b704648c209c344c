/**
 * acme-rockets' mirror of wabbit-networks, with skopeo: the image tag, its signature referrers
 * (the `sha256-<hex>` tag), and `R/tuf` from the service's OCI layout (`oci:` transport): the
 * versioned files the mirror lacks first (they are immutable), `timestamp.json` last
 * (docs/FORMAT.md §5's order). One repository at a time: net-monitor (steps 4 and 6), or a
 * namespace member and the namespace's own metadata, kept at its anchor (where a member's root
 * files are read: step 9). And the hostile mirror of step 9: another member's image, signatures
 * and metadata copied under the mirrored member's name.
 */
import { join } from 'node:path';
import { OciLayoutStore, RegistryStore, parseMetadataFileName } from '../storage/index.ts';
import { DemoFailure } from './narrator.ts';
import { REPO, tufRepo } from './parties.ts';
import type { RegistryProcess } from './registry-process.ts';
import { OnStage } from './stage.ts';

const SKOPEO = '/usr/bin/skopeo';

/** Versioned files by version, then timestamp.json (the order a client can never see a timestamp before its files). */
const copyOrder = (versioned: string[]): string[] => [...versioned.sort((a, b) => Number(a.split('.')[0]) - Number(b.split('.')[0])), 'timestamp.json'];

export class Mirror extends OnStage {

  async #skopeo(src: string, dest: string, preserveDigests = true): Promise<void> {
    const args = ['copy', '--all', ...(preserveDigests ? ['--preserve-digests'] : []), ...(src.startsWith('oci:') ? [] : ['--src-tls-verify=false']), '--dest-tls-verify=false', src, dest];
    const r = await this.stage.exec(SKOPEO, ['--insecure-policy', ...args], this.stage.tmp, { ...process.env });
    if (r.code !== 0) throw new DemoFailure(`skopeo ${args.join(' ')} failed (exit ${r.code}): ${r.stderr.trim()}`);
  }

  /** The service's OCI layout of a repository's metadata. */
  #layoutDir(repository: string): string {
    return join(this.stage.layoutRoot, ...tufRepo(repository).split('/'));
  }

  /** The metadata files of `repository`'s R/tuf in the service's layout (timestamp.json aside). */
  async #versioned(repository: string): Promise<string[]> {
    const layout = new OciLayoutStore({ root: this.stage.layoutRoot });
    return (await layout.listTags(tufRepo(repository))).filter((t) => parseMetadataFileName(t) !== undefined && t !== 'timestamp.json');
  }

  /** The versioned metadata files of `repository` that `acme` does not have yet. */
  async #missing(acme: RegistryProcess, repository: string): Promise<string[]> {
    const have = new Set(await new RegistryStore({ url: acme.url }).listTags(tufRepo(repository)));
    return (await this.#versioned(repository)).filter((t) => !have.has(t));
  }

  /** One metadata file of `from`'s R/tuf in the service's layout, copied to acme as `to`'s. */
  async #copyTuf(acme: RegistryProcess, file: string, from: string, to = from): Promise<void> {
    await this.#skopeo(`oci:${this.#layoutDir(from)}:${file}`, `docker://${acme.host}/${tufRepo(to)}:${file}`);
  }

  /** The image tag and its signature tag, from `from` on wabbit-networks to `to` on acme-rockets; told. */
  async #image(wabbit: RegistryProcess, acme: RegistryProcess, digest: string, from: string, to: string, tag: string): Promise<void> {
    const sigTag = digest.replace(':', '-');
    this.narrator.note(`$ skopeo copy --all --preserve-digests docker://${wabbit.host}/${from}:${tag} docker://${acme.host}/${to}:${tag}`);
    await this.#skopeo(`docker://${wabbit.host}/${from}:${tag}`, `docker://${acme.host}/${to}:${tag}`);
    // skopeo 1.9 cannot keep this OCI 1.1 index byte for byte (it drops the descriptors' artifactType);
    // the signature manifests themselves are copied unchanged (docs/FORMAT.md §8).
    this.narrator.note(`$ skopeo copy --all docker://${wabbit.host}/${from}:${sigTag} docker://${acme.host}/${to}:${sigTag}`);
    await this.#skopeo(`docker://${wabbit.host}/${from}:${sigTag}`, `docker://${acme.host}/${to}:${sigTag}`, false);
  }

  /** Metadata files of `from`, copied in order to acme as `to`'s; told as one command. */
  async #tufFiles(acme: RegistryProcess, order: string[], from: string, to: string): Promise<void> {
    for (const file of order) await this.#copyTuf(acme, file, from, to);
    this.narrator.note(`$ skopeo copy --all --preserve-digests oci:$DATA/oci/${tufRepo(from)}:<file> docker://${acme.host}/${tufRepo(to)}:<file>`);
    this.narrator.note(`  for ${order.length} files: ${order.join(' ')}`);
  }

  /**
   * Mirror to acme-rockets: the image tag, its signature referrers (the
   * `sha256-<hex>` tag: an index skopeo copies with every signature
   * manifest), and every metadata file of `R/tuf` the mirror does not have
   * yet (versioned files are immutable), `timestamp.json` last. Told step by
   * step; returns the metadata files in copy order.
   */
  async all(wabbit: RegistryProcess, acme: RegistryProcess, digest: string, repository = REPO, tag = 'v1'): Promise<string[]> {
    await this.#image(wabbit, acme, digest, repository, repository, tag);
    const order = copyOrder(await this.#missing(acme, repository));
    await this.#tufFiles(acme, order, repository, repository);
    return order;
  }

  /** Only R/tuf (new versioned files, then timestamp.json), told; returns the files in copy order. */
  async metadata(acme: RegistryProcess, repository: string): Promise<string[]> {
    const order = copyOrder(await this.#missing(acme, repository));
    await this.#tufFiles(acme, order, repository, repository);
    return order;
  }

  /** Only R/tuf (new versioned files, then timestamp.json), quietly. */
  async tuf(acme: RegistryProcess, repository = REPO): Promise<void> {
    for (const file of copyOrder(await this.#missing(acme, repository))) await this.#copyTuf(acme, file, repository);
  }

  /**
   * What a hostile mirror can do: serve `from`'s image tag, signatures and every metadata file
   * (timestamp.json last, same-named files overwritten) under `to`'s name. Told; returns the
   * metadata files in copy order.
   */
  async passOff(wabbit: RegistryProcess, acme: RegistryProcess, digest: string, from: string, to: string, tag = 'v1'): Promise<string[]> {
    await this.#image(wabbit, acme, digest, from, to, tag);
    const order = copyOrder(await this.#versioned(from));
    await this.#tufFiles(acme, order, from, to);
    return order;
  }
}
