/**
 * Ceremony directories on disk: written by `tufoci init|delegate|rotate root … --out DIR`, signed
 * in place by `tufoci sign-metadata DIR --key K`, sent by `tufoci upload DIR`
 * (commands/ceremony.ts). The format and its checks are src/engine/ceremony.ts; this file reads and
 * writes it, and prints where a ceremony stands.
 *
 * Only metadata and the manifest are ever written here: public keys, key ids, signatures. Never a
 * private key, never a token.
 */
import { mkdir, readdir, readFile, rename, rm, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { Root } from '@tufjs/models';
import {
  CEREMONY_FORMAT,
  CeremonyError,
  MANIFEST_FILE,
  checkDefinedGroups,
  checkIntegrity,
  describeShortfall,
  keyOfSignature,
  parseManifest,
  signedDigest,
  thresholdGroup,
  verifyGroups,
  type CeremonyCommand,
  type CeremonyFile,
  type CeremonyManifest,
  type ThresholdGroup,
} from '../engine/ceremony.ts';
import { parseMetadata, type Parsed } from '../engine/parse.ts';
import type { AuthorizedRole } from '../engine/signatures.ts';
import type { TufKeyJson } from '../keys/tuf-key.ts';
import { defaultPolicyPath, loadPolicyFile, type Policy } from '../policy/policy.ts';
import { UsageError, type Output } from './common.ts';

export const OUT_HELP = `  --out DIR          do not upload: write the metadata and a manifest (ceremony.json) to DIR,
                     a new or empty directory. The keys given sign now; every other keyholder
                     runs tufoci sign-metadata DIR --key K, then tufoci upload DIR sends it`;

export type CeremonyParsed = Parsed<'root'> | Parsed<'targets'>;

export interface CeremonyFileRead {
  entry: CeremonyFile;
  parsed: CeremonyParsed;
  /** Its path on disk. */
  path: string;
}

export interface CeremonyRead {
  dir: string;
  manifest: CeremonyManifest;
  files: CeremonyFileRead[];
}

/** What a command hands to writeCeremony: its files signed by the keys it was given (maybe none). */
export interface CeremonyPlan {
  command: CeremonyCommand;
  summary: string;
  repository: string;
  server: string;
  base: CeremonyManifest['base'];
  /** In upload order. */
  files: Array<{ file: string; role: 'root' | 'targets'; bytes: Uint8Array; thresholds: ThresholdGroup[] }>;
}

async function policy(): Promise<Policy> {
  return loadPolicyFile(defaultPolicyPath());
}

/** A ceremony file's bytes, parsed as the engine parses uploads (size bound of its role first). */
export function parseCeremonyFile(entry: Pick<CeremonyFile, 'file' | 'role'>, bytes: Uint8Array, p: Policy): CeremonyParsed {
  return entry.role === 'root' ? parseMetadata('root', bytes, p.roles.root.maxBytes, entry.file) : parseMetadata('targets', bytes, p.roles.targets.maxBytes, entry.file);
}

/** Write `bytes` to `path` through a temporary file and a rename: a reader sees the old file or the new one. */
export async function writeFileAtomic(path: string, bytes: Uint8Array | string): Promise<void> {
  const tmp = `${path}.tmp-${process.pid}`;
  try {
    await writeFile(tmp, bytes, { flag: 'wx', mode: 0o644 });
    await rename(tmp, path);
  } catch (e) {
    await rm(tmp, { force: true });
    throw e;
  }
}

const short = (id: string): string => id.slice(0, 12);

/** One line per threshold of each file: how far it is. */
export function standing(files: readonly CeremonyFileRead[]): string[] {
  const lines: string[] = [];
  for (const f of files) {
    lines.push(`  ${f.entry.file}  ${f.entry.role} v${f.entry.version}, signed part sha256 ${f.entry.signedSha256}`);
    for (const r of verifyGroups(f.parsed, f.entry.thresholds)) {
      lines.push(`    ${r.role}: ${r.signed.length} of ${r.threshold}${r.ok ? ' (met)' : `, needs ${r.threshold - r.signed.length} more`}; signed by ${r.signed.map(short).join(', ') || 'nobody yet'}`);
    }
  }
  return lines;
}

/** What is left to do: the signatures still missing, or the upload. */
export function nextStep(c: CeremonyRead): string {
  const left = c.files.flatMap((f) => verifyGroups(f.parsed, f.entry.thresholds).filter((r) => !r.ok).map((r) => describeShortfall(f.entry.file, r)));
  return left.length
    ? `still needed: ${left.join('; ')}. Each keyholder runs tufoci sign-metadata ${c.dir} --key <their key> (offline; compare the sha256 above), then tufoci upload ${c.dir}`
    : `every threshold is met: tufoci upload ${c.dir}`;
}

/** The manifest of a plan; files are parsed and checked as sign-metadata and upload will check them. */
export async function writeCeremony(dir: string, plan: CeremonyPlan, out: Output): Promise<CeremonyRead> {
  const p = await policy();
  const files: CeremonyFileRead[] = [];
  for (const f of plan.files) {
    const parsed = parseCeremonyFile(f, f.bytes, p);
    const entry: CeremonyFile = { file: f.file, role: f.role, version: parsed.md.signed.version, signedSha256: signedDigest(parsed.signedBytes), thresholds: f.thresholds };
    const foreign = parsed.signatures.find((s) => !keyOfSignature(entry, s.keyid));
    if (foreign) {
      throw new UsageError(`key ${short(foreign.keyid)} is not among the keys that sign ${f.file}: ${entry.thresholds.map((g) => `${g.label}: ${g.keyids.map(short).join(', ')}`).join('; ')}`);
    }
    files.push({ entry, parsed, path: join(dir, f.file) });
  }
  const manifest: CeremonyManifest = {
    format: CEREMONY_FORMAT,
    command: plan.command,
    summary: plan.summary,
    repository: plan.repository,
    server: plan.server,
    created: new Date().toISOString(),
    base: plan.base,
    files: files.map((f) => f.entry),
  };
  parseManifest(JSON.parse(JSON.stringify(manifest))); // what sign-metadata and upload will read back
  const byName = new Map(files.map((f) => [f.entry.file, f.parsed]));
  for (const f of files) {
    checkDefinedGroups(f.entry, byName);
    checkIntegrity(f.entry, f.parsed);
  }

  // A new or empty directory: one ceremony per directory, never files of two mixed.
  let existing: string[] = [];
  try {
    existing = await readdir(dir);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw new UsageError(`--out ${dir}: ${(e as Error).message}`);
  }
  if (existing.length) throw new UsageError(`--out ${dir} is not empty (${existing.slice(0, 3).join(', ')}${existing.length > 3 ? ', …' : ''}): a ceremony needs a new or empty directory`);
  await mkdir(dir, { recursive: true });
  for (const f of plan.files) await writeFileAtomic(join(dir, f.file), f.bytes);
  // The manifest last: a directory without one is not a ceremony (an interrupted write is never signed).
  await writeFileAtomic(join(dir, MANIFEST_FILE), `${JSON.stringify(manifest, null, 2)}\n`);

  out.say(`${plan.summary}: written to ${dir} (not uploaded)`);
  for (const line of standing(files)) out.say(line);
  out.say(nextStep({ dir, manifest, files }));
  out.result(ceremonyJson({ dir, manifest, files }));
  return { dir, manifest, files };
}

/** Read a ceremony directory back: the manifest validated, every file parsed and checked (TAMPERED otherwise). */
export async function readCeremony(dir: string): Promise<CeremonyRead> {
  let info;
  try {
    info = await stat(dir);
  } catch {
    throw new UsageError(`${dir}: no such directory`);
  }
  if (!info.isDirectory()) throw new UsageError(`${dir} is not a directory`);
  let text: string;
  try {
    text = await readFile(join(dir, MANIFEST_FILE), 'utf8');
  } catch {
    throw new UsageError(`${dir} is not a ceremony directory: it has no ${MANIFEST_FILE} (tufoci init, delegate or rotate root with --out ${dir} writes one)`);
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (cause) {
    throw new CeremonyError('BAD_MANIFEST', `${join(dir, MANIFEST_FILE)} is not JSON`, { cause });
  }
  const manifest = parseManifest(json);
  const p = await policy();
  const files: CeremonyFileRead[] = [];
  for (const entry of manifest.files) {
    const path = join(dir, entry.file);
    let bytes: Uint8Array;
    try {
      bytes = await readFile(path);
    } catch {
      throw new CeremonyError('TAMPERED', `${MANIFEST_FILE} lists ${entry.file}, which ${dir} does not hold`, { detail: { file: entry.file } });
    }
    let parsed: CeremonyParsed;
    try {
      parsed = parseCeremonyFile(entry, bytes, p);
    } catch (cause) {
      throw new CeremonyError('TAMPERED', `${path} is no longer well-formed ${entry.role} metadata: ${(cause as Error).message}`, { detail: { file: entry.file }, cause });
    }
    files.push({ entry, parsed, path });
  }
  const byName = new Map(files.map((f) => [f.entry.file, f.parsed]));
  for (const f of files) {
    checkIntegrity(f.entry, f.parsed);
    checkDefinedGroups(f.entry, byName);
  }
  return { dir, manifest, files };
}

/** The --json view of a ceremony: the manifest and, per file, each threshold's standing. */
export function ceremonyJson(c: CeremonyRead): Record<string, unknown> {
  return {
    dir: c.dir,
    command: c.manifest.command,
    repository: c.manifest.repository,
    server: c.manifest.server,
    base: c.manifest.base,
    files: c.files.map((f) => ({
      file: f.entry.file,
      role: f.entry.role,
      version: f.entry.version,
      signedSha256: f.entry.signedSha256,
      thresholds: verifyGroups(f.parsed, f.entry.thresholds).map((r) => ({ label: r.role, threshold: r.threshold, signed: r.signed, unsigned: r.unsigned, met: r.ok })),
    })),
  };
}

/** Keys without repeats (a key given twice, or as private and public file, is listed once). */
export function distinctKeys(keys: ReadonlyArray<{ keyid: string; public: TufKeyJson }>): TufKeyJson[] {
  return [...new Map(keys.map((k) => [k.keyid, k.public])).values()];
}

/** `init --out`: root v1 meets its own root role, targets v1 the targets role root v1 lists. */
export function initCeremonyPlan(repository: string, server: string, root: Uint8Array, targets: Uint8Array): CeremonyPlan {
  const md = parseMetadata('root', root, Number.MAX_SAFE_INTEGER).md.signed;
  const group = (label: string, role: 'root' | 'targets'): ThresholdGroup => {
    const r = md.roles[role];
    if (!r) throw new Error(`internal: root v1 without a ${role} role`);
    return thresholdGroup(label, r, md.keys, { file: '1.root.json', role });
  };
  const r = md.roles['root'];
  const t = md.roles['targets'];
  return {
    command: 'init',
    summary: `init ${repository}: root v1 (${r?.threshold} of ${r?.keyIDs.length} root keys), targets v1 (${t?.threshold} of ${t?.keyIDs.length} targets keys)`,
    repository,
    server,
    base: {},
    files: [
      { file: '1.root.json', role: 'root', bytes: root, thresholds: [group('root v1 (its own keys)', 'root')] },
      { file: '1.targets.json', role: 'targets', bytes: targets, thresholds: [group('targets v1 (the targets keys of root v1)', 'targets')] },
    ],
  };
}

/** `rotate root --out`: root N+1 meets a threshold of root N's root keys and of its own (TUF 5.3.4). */
export function rootCeremonyPlan(repository: string, server: string, current: Root, bytes: Uint8Array): CeremonyPlan {
  const next = parseMetadata('root', bytes, Number.MAX_SAFE_INTEGER).md.signed;
  const file = `${next.version}.root.json`;
  const role = (root: Root): AuthorizedRole => {
    const r = root.roles['root'];
    if (!r) throw new UsageError(`root v${root.version} defines no root role`);
    return r;
  };
  const n = role(next);
  return {
    command: 'rotate root',
    summary: `rotate root of ${repository}: root v${current.version} → v${next.version} (${n.threshold} of ${n.keyIDs.length} root keys)`,
    repository,
    server,
    base: { root: current.version },
    files: [
      {
        file,
        role: 'root',
        bytes,
        thresholds: [
          thresholdGroup(`root v${next.version} (the keys of root v${current.version})`, role(current), current.keys),
          thresholdGroup(`root v${next.version} (its own keys)`, n, next.keys, { file, role: 'root' }),
        ],
      },
    ],
  };
}
