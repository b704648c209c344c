/**
 * Offline signing ceremonies, the steps after `--out DIR` (ceremony-dir.ts writes DIR):
 *
 * - `tufoci sign-metadata DIR --key K`: one keyholder, offline, adds K's signature to every file
 *   in DIR that K's key may sign (per the manifest), after checking every file is what `--out`
 *   wrote and every signature on it verifies.
 * - `tufoci upload DIR`: checks every threshold against what it trusts (the files themselves for a
 *   new repository's root; otherwise the service's current root, verified, optionally from a
 *   pinned root), and only then sends the files through the service API, as the one-shot commands
 *   do (POST /v1/repos/R for init, PUT …/metadata/<file> otherwise).
 *
 * Also here: what `delegate … --out` builds on when no targets key is at hand (the current targets
 * verified by the current root's targets keys), and the thresholds of a targets file.
 */
import { readFile } from 'node:fs/promises';
import { parseArgs } from 'node:util';
import { Root, Targets } from '@tufjs/models';
import {
  CeremonyError,
  addSignature,
  checkIntegrity,
  describeShortfall,
  groupsListing,
  signedBy,
  signedDigest,
  thresholdGroup,
  verifyGroups,
  type CeremonyCommand,
  type ThresholdGroup,
} from '../../engine/ceremony.ts';
import { describeVerification, parseMetadata, verifyThreshold } from '../../engine/index.ts';
import { loadSigner } from '../../keys/index.ts';
import { defaultPolicyPath, loadPolicyFile, type Policy } from '../../policy/policy.ts';
import { ServiceClientError, type RepositoryStatus, type ServiceClient, type UploadResult } from '../../client/service-client.ts';
import { SERVER_HELP, SERVER_OPTIONS, UsageError, output, serviceClient } from '../common.ts';
import { ceremonyJson, nextStep, parseCeremonyFile, readCeremony, standing, writeFileAtomic, type CeremonyFileRead, type CeremonyParsed, type CeremonyPlan, type CeremonyRead } from '../ceremony-dir.ts';
import { currentRoot } from '../roots.ts';

const short = (id: string): string => id.slice(0, 12);

export const SIGN_METADATA_HELP = `usage: tufoci sign-metadata <DIR> --key K [--json]

Adds your signature to every file in DIR that your key may sign. DIR was written
by tufoci init, delegate or rotate root with --out DIR; its ceremony.json names
each file's thresholds and keys. Runs offline: it reads DIR and your key, and
writes only the files it signs.

Before signing it checks that every file is what --out wrote (the sha256 of its
signed part, printed here and by --out: compare them) and that every signature
on it verifies, and prints what you are signing. It refuses a key that signs for
none of the files, and a key that signed every file it may sign already.

options:
  --key K       your private key: a key file, or a pkcs11: URI (a key in an HSM)
  --json        print the result as JSON
  -h, --help    this help`;

/** What a holder is asked to sign, in a few lines. */
export function describeContent(parsed: CeremonyParsed): string[] {
  const s = parsed.md.signed;
  const lines = [`${s.type} v${s.version}, expires ${s.expires}`];
  if (s instanceof Root) {
    const scope = s.unrecognizedFields['x-tufoci-scope'];
    if (typeof scope === 'string') lines.push(`for ${scope}`);
    for (const name of ['root', 'targets', 'snapshot', 'timestamp'] as const) {
      const r = s.roles[name];
      if (r) lines.push(`${name}: ${r.threshold} of ${r.keyIDs.map(short).join(', ')}`);
    }
  } else if (s instanceof Targets) {
    const d = s.delegations;
    for (const [name, r] of Object.entries(d?.roles ?? {})) {
      lines.push(`delegates ${name}: ${r.threshold} of ${r.keyIDs.map(short).join(', ')}, paths ${(r.paths ?? []).join(' ') || '(hash prefixes)'}${r.terminating ? ', terminating' : ''}`);
    }
    if (d?.succinctRoles) lines.push(`delegates hash bins ${d.succinctRoles.namePrefix}-*: ${d.succinctRoles.threshold} of ${d.succinctRoles.keyIDs.map(short).join(', ')}`);
    if (!d) lines.push('no delegations');
    lines.push(`${Object.keys(s.targets).length} target(s)`);
  }
  return lines;
}

export async function signMetadataCommand(argv: string[]): Promise<void> {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: { key: { type: 'string' }, json: { type: 'boolean' }, help: { type: 'boolean', short: 'h' } },
  });
  if (values.help) return console.log(SIGN_METADATA_HELP);
  const [dir, ...extra] = positionals;
  if (!dir || extra.length) throw new UsageError(`sign-metadata takes one directory\n\n${SIGN_METADATA_HELP}`);
  if (!values.key) throw new UsageError('--key is required: the private key you sign with');
  const signer = await loadSigner(values.key);
  const c = await readCeremony(dir);
  const policy = await loadPolicyFile(defaultPolicyPath());

  const signed: Array<{ f: CeremonyFileRead; bytes: Uint8Array; parsed: CeremonyParsed }> = [];
  const already: CeremonyFileRead[] = [];
  for (const f of c.files) {
    if (!groupsListing(f.entry, signer.public).length) continue;
    if (signedBy(f.parsed, signer.public)) {
      already.push(f);
      continue;
    }
    const bytes = await addSignature(f.entry, f.parsed, signer);
    const parsed = parseCeremonyFile(f.entry, bytes, policy);
    checkIntegrity(f.entry, parsed); // what we write reads back as the same file, one verifying signature more
    if (parsed.signatures.length <= f.parsed.signatures.length) throw new Error(`internal: signing ${f.entry.file} added no signature`);
    signed.push({ f, bytes, parsed });
  }
  const who = `key ${short(signer.keyid)} (${signer.path})`; // path: a pkcs11: URI shown without its PIN
  if (!signed.length && !already.length) {
    const wants = c.files.map((f) => `${f.entry.file}: ${f.entry.thresholds.map((g) => `${g.label}: ${g.keyids.map(short).join(', ')}`).join('; ')}`);
    throw new CeremonyError('NOT_AUTHORIZED', `${who} signs for none of the files in ${dir} (${wants.join(' | ')}); nothing signed`, {
      detail: { keyid: signer.keyid, dir },
    });
  }
  if (!signed.length) {
    throw new CeremonyError('ALREADY_SIGNED', `${who} already signed ${already.map((f) => f.entry.file).join(', ')} in ${dir}: each key signs once; nothing signed`, {
      detail: { keyid: signer.keyid, dir, files: already.map((f) => f.entry.file) },
    });
  }
  for (const s of signed) await writeFileAtomic(s.f.path, s.bytes);

  const now: CeremonyRead = {
    ...c,
    files: c.files.map((f) => {
      const s = signed.find((x) => x.f === f);
      return s ? { ...f, parsed: s.parsed } : f;
    }),
  };
  const out = output(values.json ?? false);
  out.say(`${c.manifest.summary} (${c.manifest.repository} on ${c.manifest.server})`);
  for (const s of signed) {
    out.say(`signed ${s.f.entry.file} with ${who}: ${describeContent(s.parsed).join('; ')}`);
  }
  for (const f of already) out.say(`already signed by this key: ${f.entry.file} (not signed again)`);
  for (const line of standing(now.files)) out.say(line);
  out.say(nextStep(now));
  out.result({ ...ceremonyJson(now), keyid: signer.keyid, signed: signed.map((s) => s.f.entry.file), alreadySigned: already.map((f) => f.entry.file) });
}

/**
 * The current top-level targets of `repo`, verified by the targets keys of the service's current
 * root (itself verified by its own keys, and from `pinned` when given): what `delegate … --out`
 * builds on when no targets key is at hand to recognise it by.
 */
export async function currentTargetsByRoot(client: ServiceClient, repo: string, pinned?: Uint8Array) {
  const policy = await loadPolicyFile(defaultPolicyPath());
  const { root } = await currentRoot(client, repo, policy, pinned);
  const status = await client.status(repo);
  const t = status.roles.find((r) => r.role === 'targets');
  if (!t) throw new UsageError(`${repo} has no targets role`);
  const parsed = parseMetadata('targets', await client.metadata(repo, `${t.version}.targets.json`), policy.roles.targets.maxBytes);
  if (parsed.md.signed.version !== t.version) throw new UsageError(`the service's ${t.version}.targets.json of ${repo} holds version ${parsed.md.signed.version}`);
  const role = root.roles['targets'];
  const v = role ? verifyThreshold(`targets v${t.version}`, parsed.signedBytes, parsed.signatures, role, root.keys) : undefined;
  if (!v?.ok) throw new UsageError(`the service's targets v${t.version} of ${repo} does not verify with the targets keys of root v${root.version} (${v ? describeVerification(v) : 'no targets role'}); refusing to build on it`);
  return { current: parsed.md.signed, status, policy, root };
}

/** The threshold a new top-level targets version must meet: the targets role of `root`. */
export function targetsThreshold(root: Root, version: number): ThresholdGroup {
  const role = root.roles['targets'];
  if (!role) throw new UsageError(`root v${root.version} defines no targets role`);
  return thresholdGroup(`targets v${version} (the targets keys of root v${root.version})`, role, root.keys);
}

/** `delegate … --out`: the next top-level targets, to meet the targets role of the service's current root. */
export async function targetsCeremonyPlan(client: ServiceClient, repo: string, command: CeremonyCommand, what: string, bytes: Uint8Array, pinned?: Uint8Array): Promise<CeremonyPlan> {
  const policy = await loadPolicyFile(defaultPolicyPath());
  const { root } = await currentRoot(client, repo, policy, pinned);
  const version = parseMetadata('targets', bytes, policy.roles.targets.maxBytes).md.signed.version;
  return {
    command,
    summary: `${what} on ${repo}: targets v${version}`,
    repository: repo,
    server: client.url,
    base: { root: root.version, targets: version - 1 },
    files: [{ file: `${version}.targets.json`, role: 'targets', bytes, thresholds: [targetsThreshold(root, version)] }],
  };
}

/** The threshold of a root role, labelled for messages. */
function rootThreshold(label: string, root: Root): ThresholdGroup {
  const role = root.roles['root'];
  if (!role) throw new UsageError(`root v${root.version} defines no root role`);
  return thresholdGroup(label, role, root.keys);
}

export const UPLOAD_HELP = `usage: tufoci upload <DIR> [--trust FILE] [--root-out FILE] [options]

Sends the metadata of a ceremony directory (tufoci init, delegate, rotate root or resign
with --out DIR, signed with tufoci sign-metadata) to the service it was prepared
for, once every threshold is met. Before sending anything it checks:
  - every file is what --out wrote, and every signature on it verifies;
  - the service is still where DIR was built on (else: prepare again);
  - each threshold, derived from what it trusts, not from ceremony.json: a new
    repository's root v1 by its own root keys and its targets by root v1's
    targets keys; a delegation change by the targets keys of the service's current
    root; root N+1 by a threshold of root N's keys and of its own (TUF's rule).
    The current root is checked against its own keys (and, with --trust, reached
    from your pinned root). Each key counts once.
It names every role that lacks signatures, and how many, and then sends nothing.
A file the service already holds (an earlier upload of DIR) is not sent again.

options:
  --trust FILE       a root you pinned: the chain from it to the service's root is verified first
  --root-out FILE    also save the uploaded root here (init, rotate root)
${SERVER_HELP}
  (--server, when given, must be the service DIR was prepared for)`;

interface UploadStep {
  f: CeremonyFileRead;
  groups: ThresholdGroup[];
  /** The service holds this very file already (an earlier upload of DIR). */
  done: boolean;
}

function isNotFound(e: unknown): boolean {
  return e instanceof ServiceClientError && e.code === 'REPO_NOT_FOUND';
}

/** Does the service's `<version>.<role>.json` of `repo` hold the signed part `f` holds? */
async function serviceHolds(client: ServiceClient, repo: string, f: CeremonyFileRead, policy: Policy): Promise<boolean> {
  const parsed = parseCeremonyFile(f.entry, await client.metadata(repo, f.entry.file), policy);
  return signedDigest(parsed.signedBytes) === f.entry.signedSha256;
}

/**
 * Each file with the thresholds it must meet, from what the upload trusts, and whether the service
 * holds it already; STALE when the service moved on since DIR was prepared.
 */
async function uploadSteps(client: ServiceClient, c: CeremonyRead, policy: Policy, pinned: Uint8Array | undefined): Promise<UploadStep[]> {
  const m = c.manifest;
  const repo = m.repository;
  const stale = (message: string): CeremonyError =>
    new CeremonyError('STALE', `${message}; ${c.dir} was prepared on what the service held then: prepare the ceremony again`, { detail: { repository: repo, dir: c.dir } });

  if (m.command === 'init') {
    const [rootFile, targetsFile] = c.files as [CeremonyFileRead, CeremonyFileRead];
    const root = rootFile.parsed.md.signed as Root;
    const steps: UploadStep[] = [
      { f: rootFile, groups: [rootThreshold('root v1 (its own keys)', root)], done: false },
      { f: targetsFile, groups: [targetsThreshold(root, 1)], done: false },
    ];
    let status: RepositoryStatus | undefined;
    try {
      status = await client.status(repo);
    } catch (e) {
      if (!isNotFound(e)) throw e;
    }
    if (status) {
      const done = (await serviceHolds(client, repo, rootFile, policy)) && (await serviceHolds(client, repo, targetsFile, policy).catch(() => false));
      if (!done) throw stale(`${repo} already exists on ${m.server}`);
      for (const s of steps) s.done = true;
    }
    return steps;
  }

  const status = await client.status(repo);
  const { root: current } = await currentRoot(client, repo, policy, pinned);
  const steps: UploadStep[] = [];
  for (const f of c.files) {
    const have = status.roles.find((r) => r.role === f.entry.role)?.version ?? 0;
    let done = false;
    if (have === f.entry.version) {
      if (!(await serviceHolds(client, repo, f, policy))) throw stale(`the service already holds another ${f.entry.role} v${have} of ${repo}`);
      done = true;
    } else if (have !== f.entry.version - 1) {
      throw stale(`${f.entry.file} follows ${f.entry.role} v${f.entry.version - 1}, but the service's ${f.entry.role} of ${repo} is v${have}`);
    }
    let groups: ThresholdGroup[];
    if (f.entry.role === 'root') {
      const next = f.parsed.md.signed as Root;
      groups = [rootThreshold(`root v${next.version} (the keys of root v${current.version})`, current), rootThreshold(`root v${next.version} (its own keys)`, next)];
    } else {
      groups = [targetsThreshold(current, f.entry.version)];
    }
    steps.push({ f, groups, done });
  }
  return steps;
}

export async function upload(argv: string[]): Promise<void> {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: { ...SERVER_OPTIONS, trust: { type: 'string' }, 'root-out': { type: 'string' } },
  });
  if (values.help) return console.log(UPLOAD_HELP);
  const [dir, ...extra] = positionals;
  if (!dir || extra.length) throw new UsageError(`upload takes one directory\n\n${UPLOAD_HELP}`);
  const c = await readCeremony(dir);
  const m = c.manifest;
  if (values.server !== undefined && values.server.replace(/\/+$/, '') !== m.server) {
    throw new UsageError(`${dir} was prepared for the service at ${m.server}, not ${values.server}: its files build on that service's state`);
  }
  const pinned = values.trust ? await readFile(values.trust) : undefined;
  const policy = await loadPolicyFile(defaultPolicyPath());
  const client = serviceClient({ server: m.server, token: values.token });
  const steps = await uploadSteps(client, c, policy, pinned);

  // Every threshold, before anything is sent.
  const lacking: string[] = [];
  const verdicts = steps.map((s) => ({ s, results: verifyGroups(s.f.parsed, s.groups) }));
  for (const { s, results } of verdicts) if (!s.done) for (const r of results) if (!r.ok) lacking.push(describeShortfall(s.f.entry.file, r));
  if (lacking.length) {
    throw new CeremonyError('THRESHOLD_NOT_MET', `not uploading ${dir}: ${lacking.join('; ')} (tufoci sign-metadata ${dir} --key <key>)`, {
      detail: { dir, lacking },
    });
  }

  const out = output(values.json ?? false);
  const results: UploadResult[] = [];
  const bytesOf = async (f: CeremonyFileRead): Promise<Uint8Array> => readFile(f.path);
  if (m.command === 'init') {
    if (!steps.every((s) => s.done)) {
      const [rootStep, targetsStep] = steps as [UploadStep, UploadStep];
      results.push(await client.create(m.repository, await bytesOf(rootStep.f), await bytesOf(targetsStep.f)));
    }
  } else {
    for (const s of steps) if (!s.done) results.push(await client.upload(m.repository, s.f.entry.file, await bytesOf(s.f)));
  }
  const rootStep = steps.find((s) => s.f.entry.role === 'root');
  if (values['root-out'] && rootStep) await writeFileAtomic(values['root-out'], await bytesOf(rootStep.f));

  const skipped = steps.filter((s) => s.done).map((s) => s.f.entry.file);
  out.say(`${m.summary}: ${results.length ? `uploaded ${steps.filter((s) => !s.done).map((s) => s.f.entry.file).join(', ')} to ${m.server}` : 'the service holds every file already; nothing sent'}`);
  for (const { s, results: rs } of verdicts) for (const r of rs) out.say(`  ${s.f.entry.file}: ${r.role}: ${r.signed.length} of ${r.threshold} (${r.signed.map(short).join(', ')})`);
  for (const r of results) {
    out.say(`  ${r.role} v${r.version}${r.unchanged ? ' (unchanged)' : ''}; timestamp v${r.timestampVersion}`);
    for (const w of r.warnings ?? []) out.say(`warning: ${w}`);
  }
  if (rootStep) out.say(`root v${rootStep.f.entry.version}: ${values['root-out'] ?? rootStep.f.path}${m.command === 'init' ? ` — clients pin it (tufoci trust add ${m.repository} ${values['root-out'] ?? rootStep.f.path})` : ''}`);
  out.result({
    repository: m.repository,
    command: m.command,
    server: m.server,
    uploaded: results,
    skipped,
    thresholds: verdicts.map(({ s, results: rs }) => ({ file: s.f.entry.file, results: rs.map((r) => ({ label: r.role, threshold: r.threshold, signed: r.signed })) })),
    ...(values['root-out'] ? { rootOut: values['root-out'] } : {}),
  });
}
