/**
 * Publisher commands: `sign` (plain signature only) and `publish` (plain
 * signature + the tag added to a delegated TUF role, signed with the CI key,
 * uploaded; retried on conflicts by re-reading the head).
 */
import { parseArgs } from 'node:util';
import { buildTargets, binFor, isoExpiry, nextTargets, parseMetadata, signMetadata, targetFile, type ImageTarget } from '../../engine/index.ts';
import { InMemorySigner, loadSignerFile } from '../../keys/index.ts';
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
  const store = registryFor(image.host, flags);
  const signer = await loadSignerFile(keyFile);
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
adds the tag to the delegated role (its hash bin when the role uses bins),
signs the role's next version with --key and uploads it. On a conflict
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

/**
 * The role file a tag goes into: the role itself, or its bin when `role` names succinct hash bins;
 * and the key ids top-level targets lists for it (a bin without metadata yet is not in the status).
 */
async function targetRole(client: ServiceClient, repo: string, role: string, tag: string): Promise<{ file: string; delegatedIds: string[] }> {
  const status = await client.status(repo);
  const t = status.roles.find((r) => r.role === 'targets');
  if (!t) throw new UsageError(`${repo} has no targets role`);
  const policy = await loadPolicyFile(defaultPolicyPath());
  const top = parseMetadata('targets', await client.metadata(repo, `${t.version}.targets.json`), policy.roles.targets.maxBytes).md.signed;
  const succinct = top.delegations?.succinctRoles;
  if (succinct && succinct.namePrefix === role) return { file: binFor(top, tag), delegatedIds: [...succinct.keyIDs] };
  return { file: role, delegatedIds: [...(top.delegations?.roles?.[role]?.keyIDs ?? [])] };
}

export async function publishTag(
  client: ServiceClient,
  repo: string,
  role: string,
  tag: string,
  target: ImageTarget,
  signer: Awaited<ReturnType<typeof loadSignerFile>>,
  expiresMs: number,
  attempts = 8,
) {
  const policy = await loadPolicyFile(defaultPolicyPath());
  const { file: roleFile, delegatedIds } = await targetRole(client, repo, role, tag);
  for (let attempt = 1; ; attempt++) {
    const status = await client.status(repo);
    const current = status.roles.find((r) => r.role === roleFile);
    const version = current?.version ?? status.tombstones.find((t) => t.role === roleFile)?.version ?? 0;
    const expires = isoExpiry(Date.now() + expiresMs);
    let next;
    if (current) {
      const md = parseMetadata('targets', await client.metadata(repo, `${version}.${roleFile}.json`), policy.roles.delegated.maxBytes, roleFile).md.signed;
      next = nextTargets(md, expires, (json) => {
        (json['targets'] as Record<string, unknown>)[tag] = targetFile(tag, target).toJSON();
      });
    } else {
      next = buildTargets({ version: version + 1, expires, targets: { [tag]: target } });
    }
    try {
      // Signed under the legacy id too while the delegation lists the key under it (legacy-keyids.ts).
      const trustedIds = [...(current?.keyids ?? []), ...delegatedIds];
      return await client.upload(repo, `${next.version}.${roleFile}.json`, await signMetadata(next, [signer], { trustedIds }));
    } catch (e) {
      const retry = e instanceof ServiceClientError && ['BUSY', 'VERSION_TAKEN', 'VERSION_ROLLBACK', 'LOCK_LOST'].includes(e.code);
      if (!retry || attempt >= attempts) throw e;
      const wait = e.code === 'BUSY' ? Number(e.detail['retryAfterSeconds'] ?? 1) * 1000 : 50;
      await new Promise((r) => setTimeout(r, wait * (0.5 + Math.random())));
    }
  }
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
  const store = registryFor(image.host, values);
  const manifest = await store.getManifest(image.repository, image.tag, 4 * 1024 * 1024);
  const descriptor = { mediaType: manifest.mediaType, digest: manifest.digest, size: manifest.bytes.byteLength };
  let signature: string | undefined;
  if (key) {
    const signer = await loadSignerFile(key);
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
  const md = buildTargets({ version: 1, expires, targets: { [image.tag]: { ...descriptor } } });
  const result = await client.upload(image.repository, `1.${job.jobRole}.json`, await signMetadata(md, [jobKey]));
  const out = output(values.json ?? false);
  out.say(`published ${image.repository}:${image.tag} = ${descriptor.digest}`);
  out.say(`  job role ${job.jobRole} (key ${jobKey.keyid.slice(0, 12)}, in memory only) under ${job.role}, paths ${job.paths.join(' ')}; valid until ${job.expires}`);
  out.say(`  timestamp v${result.timestampVersion}; when the grant ends the service folds the tag into ${job.role} and the job key signs nothing more`);
  if (signature) out.say(`  signature ${signature}`);
  out.result({ digest: descriptor.digest, ...(signature ? { signature } : {}), job, keyid: jobKey.keyid, ...result });
}
