/**
 * Publisher commands: `sign` (plain signature only) and `publish` (plain
 * signature + the tag added to a delegated TUF role, signed with the CI key,
 * uploaded; retried on conflicts by re-reading the head).
 */
import { parseArgs } from 'node:util';
import type { Targets } from '@tufjs/models';
import { BINS_FIELD, BINS_SCOPE_FIELD, buildTargets, binFor, isoExpiry, nextTargets, parseMetadata, signMetadata, targetFile, type ImageTarget } from '../../engine/index.ts';
import type { TufKeyJson } from '../../keys/index.ts';
import { namedNamespace } from '../../engine/scope.ts';
import { InMemorySigner, loadSigner, repositoryBinsSigner } from '../../keys/index.ts';
import { defaultPolicyPath, loadPolicyFile } from '../../policy/policy.ts';
import { pushSignature, signDescriptor } from '../../client/signatures.ts';
import { ServiceClientError, type ServiceClient } from '../../client/service-client.ts';
import { SERVER_HELP, SERVER_OPTIONS, UsageError, output, parseDuration, serviceClient } from '../common.ts';
import { REGISTRY_HELP, REGISTRY_OPTIONS, parseImageRef, registryFor } from '../registry.ts';

export const SIGN_HELP = `usage: tufoci sign <registry>/<repo>:<tag> --key K [--json]

Signs the manifest digest the tag points at (a DSSE envelope over its OCI
descriptor) and pushes the signature to the registry as a referrer.
${REGISTRY_HELP}`;

async function resolveAndSign(ref: string, keyFile: string, flags: Record<string, unknown>) {
  const image = parseImageRef(ref);
  const store = await registryFor(image.host, flags);
  const signer = await loadSigner(keyFile);
  const manifest = await store.getManifest(image.repository, image.tag, 4 * 1024 * 1024);
  const descriptor = { mediaType: manifest.mediaType, digest: manifest.digest, size: manifest.bytes.byteLength };
  const signature = await pushSignature(store, image.repository, descriptor, await signDescriptor(descriptor, [signer]));
  return { image, store, signer, descriptor, signature };
}

export async function sign(argv: string[]): Promise<void> {
  const { values, positionals } = parseArgs({ args: argv, allowPositionals: true, options: { ...REGISTRY_OPTIONS, key: { type: 'string' }, json: { type: 'boolean' }, help: { type: 'boolean', short: 'h' } } });
  if (values.help) return console.log(SIGN_HELP);
  const [ref, ...extra] = positionals;
  if (!ref || extra.length || !values.key) throw new UsageError(SIGN_HELP);
  const r = await resolveAndSign(ref, values.key, values);
  const out = output(values.json ?? false);
  out.say(`signed ${r.image.repository}@${r.descriptor.digest} with ${r.signer.keyid.slice(0, 12)}; signature ${r.signature.digest}`);
  out.result({ digest: r.descriptor.digest, keyid: r.signer.keyid, signature: r.signature.digest });
}

export const PUBLISH_HELP = `usage: tufoci publish <registry>/<repo>:<tag> --role ci --key ci.key [--expires 30d] [options]
       tufoci publish <registry>/<repo>:<tag> --ephemeral [--grant TOKEN] [--key sig.key] [options]
       tufoci publish <registry>/<repo>:<tag> --service-signed [--role release] [--key sig.key] [options]

Resolves the tag's manifest digest in the registry, pushes a plain signature,
adds the tag to the delegated role (its hash bin when the role uses bins; the
first publish after \`tufoci delegate add\` sets the bins up and moves the tags
the role already lists into them), signs the role's next version with --key and
uploads it. On a conflict
(another publisher got there first) it re-reads the role and tries again.

With --ephemeral (a CI job holding a grant, see tufoci grant): a key is
generated in memory for this job only and never written anywhere; the grant
(--grant or $TUFOCI_GRANT) is redeemed for a job role delegated to that key,
limited to the grant's paths and time; the tag is signed into it and
uploaded. --key, if given, still pushes a plain signature with that key.

With --service-signed (a role the owner delegated to the service's CI key with
\`tufoci delegate add <role> --online\`; default role "ci"): the tag is sent to
the service, which signs it into that role. Concurrent publications to one
repository are signed together, as one new role version. Needs a write token
for the repository (--token or $TUFOCI_TOKEN). --key, if given, still pushes a
plain signature with that key.
${REGISTRY_HELP}
${SERVER_HELP}`;

const RETRIED = ['BUSY', 'VERSION_TAKEN', 'VERSION_ROLLBACK', 'LOCK_LOST'];

/** Upload what `attempt` builds, building it again from a fresh read on a conflict (another publisher got there first). */
async function withRetries<T>(attempt: () => Promise<T>, attempts = 8): Promise<T> {
  for (let n = 1; ; n++) {
    try {
      return await attempt();
    } catch (e) {
      const retry = e instanceof ServiceClientError && RETRIED.includes(e.code);
      if (!retry || n >= attempts) throw e;
      const wait = e.code === 'BUSY' ? Number(e.detail['retryAfterSeconds'] ?? 1) * 1000 : 50;
      await new Promise((r) => setTimeout(r, wait * (0.5 + Math.random())));
    }
  }
}

type Signer = Pick<Awaited<ReturnType<typeof loadSigner>>, 'keyid' | 'public' | 'sign'>;

interface Context {
  client: ServiceClient;
  repo: string;
  policy: Awaited<ReturnType<typeof loadPolicyFile>>;
  signer: Signer;
  expiresMs: number;
}

/** The signer for a role delegated to `keyIDs`: the repository's bins key (keys/signer.ts) when they name it, else --key. */
function signerFor(c: Context, keyIDs: readonly string[]): Context {
  const bins = repositoryBinsSigner(c.signer, c.repo);
  return bins && keyIDs.includes(bins.keyid) ? { ...c, signer: bins } : c;
}

/** The current version of `role` (0 when none, a tombstone's when it was delegated before), and its metadata if it has any. */
async function currentRole(c: Context, role: string): Promise<{ version: number; keyids: string[]; md: Targets | undefined }> {
  const status = await c.client.status(c.repo);
  const current = status.roles.find((r) => r.role === role);
  const version = current?.version ?? status.tombstones.find((t) => t.role === role)?.version ?? 0;
  const md = current ? parseMetadata('targets', await c.client.metadata(c.repo, `${version}.${role}.json`), c.policy.roles.delegated.maxBytes, role).md.signed : undefined;
  return { version, keyids: current?.keyids ?? [], md };
}

/** Sign and upload the next version of `role` that `edit` makes of the current one (or of an empty role), retried on conflicts. */
async function putRole(c: Context, role: string, delegatedIds: readonly string[], edit: (json: Record<string, unknown>) => void) {
  return withRetries(async () => {
    const { version, keyids, md } = await currentRole(c, role);
    const expires = isoExpiry(Date.now() + c.expiresMs);
    const next = nextTargets(md ?? buildTargets({ version, expires }), expires, edit);
    // Signed under the legacy id too while the delegation lists the key under it (legacy-keyids.ts).
    return c.client.upload(c.repo, `${next.version}.${role}.json`, await signMetadata(next, [c.signer], { trustedIds: [...keyids, ...delegatedIds] }));
  });
}

/**
 * Where a tag of `role` goes: the role itself; its bin, when top-level targets delegates to bins
 * named after it; or, when the delegation asks the role to spread its tags over bins of its own
 * (`x-tufoci-bins`, tufoci delegate add), the bin the role delegates the tag to. Such a role is
 * set up here the first time: it is given the bins delegation (the repository's bins key derived
 * from --key, for a role delegated to that key alone; else the keys and threshold of the
 * delegation to it), the tags it already lists are moved into their bins, then dropped from it;
 * each step is a verified upload, so a client finds every tag at every moment. A role whose expiry
 * is within half the publishing window is renewed.
 */
async function placement(c: Context, role: string, name: string): Promise<{ file: string; delegatedIds: string[]; tag: string; signer: Context }> {
  const status = await c.client.status(c.repo);
  const t = status.roles.find((r) => r.role === 'targets');
  if (!t) throw new UsageError(`${c.repo} has no targets role`);
  const top = parseMetadata('targets', await c.client.metadata(c.repo, `${t.version}.targets.json`), c.policy.roles.targets.maxBytes).md.signed;
  // In a namespace (its top-level targets names one), a target path names its repository.
  const tag = namedNamespace(top) === undefined ? name : `${c.repo}/${name}`;
  const succinct = top.delegations?.succinctRoles;
  if (succinct && succinct.namePrefix === role) return { file: binFor(top, tag), delegatedIds: [...succinct.keyIDs], tag, signer: c };
  const entry = top.delegations?.roles?.[role];
  const delegatedIds = [...(entry?.keyIDs ?? [])];
  const bins = entry?.unrecognizedFields?.[BINS_FIELD];
  if (!entry || typeof bins !== 'number') return { file: role, delegatedIds, tag, signer: c };
  let { md } = await currentRole(c, role);
  if (!md?.delegations?.succinctRoles) {
    // Step 1: the bins delegation, next to the tags the role lists now. A role delegated to this
    // key alone gives its bins a key derived for this repository, and says so (bound-bins.ts);
    // otherwise the bins take the delegation's keys and threshold.
    const own = entry.keyIDs.length === 1 && entry.threshold === 1 && entry.keyIDs[0] === c.signer.keyid ? repositoryBinsSigner(c.signer, c.repo) : undefined;
    const keys = own
      ? [own.public]
      : entry.keyIDs.map((id) => top.delegations?.keys[id]?.toJSON() as unknown as TufKeyJson | undefined).filter((k): k is TufKeyJson => k !== undefined);
    const built = buildTargets({ version: 1, expires: isoExpiry(Date.now() + c.expiresMs), bins: { namePrefix: role, bins, keys, threshold: own ? 1 : entry.threshold } });
    await putRole(c, role, delegatedIds, (json) => {
      if ((json['delegations'] as { succinct_roles?: unknown } | undefined)?.succinct_roles) return;
      json['delegations'] = (built.toJSON() as Record<string, unknown>)['delegations'];
      if (own) json[BINS_SCOPE_FIELD] = c.repo;
    });
    md = (await currentRole(c, role)).md as Targets;
  }
  const inRole = Object.keys(md.targets);
  const bin = md.delegations?.succinctRoles as NonNullable<NonNullable<Targets['delegations']>['succinctRoles']>;
  if (inRole.length > 0) {
    // Step 2: each bin gets the tags of the role that hash to it; step 3: the role drops them.
    const byBin = new Map<string, Record<string, unknown>>();
    for (const name of inRole) {
      const b = bin.getRoleForTarget(name);
      const list = byBin.get(b) ?? {};
      list[name] = (md.targets[name] as NonNullable<Targets['targets'][string]>).toJSON();
      byBin.set(b, list);
    }
    for (const [b, moved] of byBin) await putRole(signerFor(c, bin.keyIDs), b, [...bin.keyIDs], (json) => Object.assign(json['targets'] as Record<string, unknown>, moved));
    await putRole(c, role, delegatedIds, (json) => {
      json['targets'] = {};
    });
  } else if (Date.parse(md.expires) - Date.now() < c.expiresMs / 2) {
    await putRole(c, role, delegatedIds, () => {}); // renewed: its bins are reached through it
  }
  return { file: bin.getRoleForTarget(tag), delegatedIds: [...bin.keyIDs], tag, signer: signerFor(c, bin.keyIDs) };
}

export async function publishTag(client: ServiceClient, repo: string, role: string, tag: string, target: ImageTarget, signer: Signer, expiresMs: number) {
  const c: Context = { client, repo, policy: await loadPolicyFile(defaultPolicyPath()), signer, expiresMs };
  const placed = await placement(c, role, tag);
  return putRole(placed.signer, placed.file, placed.delegatedIds, (json) => {
    const listed = json['targets'] as Record<string, unknown>;
    // A role carried over when its repository moved into a namespace lists bare tags, which a
    // member's role may not: they are dropped as the first qualified tag goes in (tufoci migrate).
    if (placed.tag !== tag) for (const path of Object.keys(listed)) if (!path.startsWith(`${c.repo}/`)) delete listed[path];
    listed[placed.tag] = targetFile(placed.tag, target).toJSON();
  });
}

export async function publish(argv: string[]): Promise<void> {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: {
      ...SERVER_OPTIONS,
      ...REGISTRY_OPTIONS,
      role: { type: 'string' },
      key: { type: 'string' },
      expires: { type: 'string' },
      ephemeral: { type: 'boolean' },
      grant: { type: 'string' },
      'service-signed': { type: 'boolean' },
    },
  });
  if (values.help) return console.log(PUBLISH_HELP);
  const [ref, ...extra] = positionals;
  if (values.ephemeral) {
    if (!ref || extra.length || values.role) throw new UsageError(`publish --ephemeral takes one image reference and no --role (the grant names it)\n\n${PUBLISH_HELP}`);
    return publishEphemeral(ref, values);
  }
  if (values['service-signed']) {
    if (!ref || extra.length || values.expires) throw new UsageError(`publish --service-signed takes one image reference and no --expires (the service sets it)\n\n${PUBLISH_HELP}`);
    return publishServiceSigned(ref, values.role ?? 'ci', values);
  }
  if (!ref || extra.length || !values.key || !values.role) throw new UsageError(PUBLISH_HELP);
  const expiresMs = parseDuration(values.expires ?? '30d', '--expires');
  const r = await resolveAndSign(ref, values.key, values);
  const client = serviceClient(values);
  const result = await publishTag(client, r.image.repository, values.role, r.image.tag, { ...r.descriptor }, r.signer, expiresMs);
  const out = output(values.json ?? false);
  out.say(`published ${r.image.repository}:${r.image.tag} = ${r.descriptor.digest}`);
  out.say(`  signature ${r.signature.digest}; ${result.role} v${result.version}; timestamp v${result.timestampVersion}`);
  out.result({ digest: r.descriptor.digest, signature: r.signature.digest, ...result });
}

/** The manifest descriptor of `ref` in its registry, and a plain signature pushed with `key` when given. */
async function resolveDescriptor(
  ref: string,
  key: string | undefined,
  values: Parameters<typeof registryFor>[1],
): Promise<{ image: ReturnType<typeof parseImageRef>; descriptor: ImageTarget & { size: number }; signature: string | undefined }> {
  const image = parseImageRef(ref);
  const store = await registryFor(image.host, values);
  const manifest = await store.getManifest(image.repository, image.tag, 4 * 1024 * 1024);
  const descriptor = { mediaType: manifest.mediaType, digest: manifest.digest, size: manifest.bytes.byteLength };
  let signature: string | undefined;
  if (key) {
    const signer = await loadSigner(key);
    signature = (await pushSignature(store, image.repository, descriptor, await signDescriptor(descriptor, [signer]))).digest;
  }
  return { image, descriptor, signature };
}

/** `publish --service-signed`: the service signs the tag into a role delegated to its CI key. */
async function publishServiceSigned(
  ref: string,
  role: string,
  values: Parameters<typeof registryFor>[1] & { key?: string | undefined; json?: boolean | undefined; server?: string | undefined; token?: string | undefined },
): Promise<void> {
  const { image, descriptor, signature } = await resolveDescriptor(ref, values.key, values);
  const client = serviceClient(values);
  let result;
  for (let attempt = 1; ; attempt++) {
    try {
      result = await client.publishTags(image.repository, role, { [image.tag]: { ...descriptor } });
      break;
    } catch (e) {
      const retry = e instanceof ServiceClientError && ['BUSY', 'LOCK_LOST'].includes(e.code);
      if (!retry || attempt >= 8) throw e;
      await new Promise((r) => setTimeout(r, Number(e.detail['retryAfterSeconds'] ?? 1) * 1000 * (0.5 + Math.random())));
    }
  }
  const out = output(values.json ?? false);
  out.say(`published ${image.repository}:${image.tag} = ${descriptor.digest}`);
  out.say(`  signed by the service into ${result.role} v${result.version}; timestamp v${result.timestampVersion}`);
  if (signature) out.say(`  signature ${signature}`);
  out.result({ digest: descriptor.digest, ...(signature ? { signature } : {}), ...result });
}

/** `publish --ephemeral`: redeem a grant with a key that lives only in this process, sign the tag into the job role. */
async function publishEphemeral(
  ref: string,
  values: {
    grant?: string | undefined;
    key?: string | undefined;
    json?: boolean | undefined;
    server?: string | undefined;
    token?: string | undefined;
    'plain-http'?: boolean | undefined;
    'registry-username'?: string | undefined;
    'registry-password'?: string | undefined;
  },
): Promise<void> {
  const token = values.grant ?? process.env['TUFOCI_GRANT'];
  if (!token) throw new UsageError('publish --ephemeral needs the grant: --grant TOKEN or $TUFOCI_GRANT (from tufoci grant)');
  const { image, descriptor, signature } = await resolveDescriptor(ref, values.key, values);
  const jobKey = InMemorySigner.generate('ed25519'); // never leaves this process
  const client = serviceClient(values).withToken(token);
  const job = await client.redeemGrant(image.repository, jobKey.public);
  const policy = await loadPolicyFile(defaultPolicyPath());
  // The job role must outlive the grant until the service folds it into its parent (at the grant's end).
  const now = Date.now();
  const expires = isoExpiry(Math.min(now + (policy.roles.ci.expiresMaxMinutes - 1) * 60_000, job.endsAt + 30 * 60_000));
  // In a namespace the grant's paths are qualified (`<repo>/…`): so is the tag.
  const path = job.paths.every((p) => p.startsWith(`${image.repository}/`)) ? `${image.repository}/${image.tag}` : image.tag;
  const md = buildTargets({ version: 1, expires, targets: { [path]: { ...descriptor } } });
  const result = await client.upload(image.repository, `1.${job.jobRole}.json`, await signMetadata(md, [jobKey]));
  const out = output(values.json ?? false);
  out.say(`published ${image.repository}:${image.tag} = ${descriptor.digest}`);
  out.say(`  job role ${job.jobRole} (key ${jobKey.keyid.slice(0, 12)}, in memory only) under ${job.role}, paths ${job.paths.join(' ')}; valid until ${job.expires}`);
  out.say(`  timestamp v${result.timestampVersion}; when the grant ends the service folds the tag into ${job.role} and the job key signs nothing more`);
  if (signature) out.say(`  signature ${signature}`);
  out.result({ digest: descriptor.digest, ...(signature ? { signature } : {}), job, keyid: jobKey.keyid, ...result });
}
