/**
 * TUF metadata file names as OCI tags. tufoci stores consistent-snapshot
 * repositories only, so every file is `<version>.<role>.json` except the one
 * moving pointer, `timestamp.json`. Both forms must also be valid OCI tags
 * (`[A-Za-z0-9_][A-Za-z0-9._-]{0,127}`), which restricts role names to
 * `[A-Za-z0-9_][A-Za-z0-9_.-]*`. The version is the leading digits up to the
 * first dot, so `3.7.json` is version 3 of role "7": parsing is unambiguous.
 */

/** The OCI tag grammar. */
const TAG = /^[A-Za-z0-9_][A-Za-z0-9._-]{0,127}$/;

export function isTag(reference: string): boolean {
  return TAG.test(reference);
}

export const TIMESTAMP_FILE_NAME = 'timestamp.json';

export interface MetadataFileName {
  fileName: string;
  role: string;
  /** Absent only for timestamp.json. */
  version?: number;
}

const VERSIONED = /^([1-9][0-9]{0,15})\.([A-Za-z0-9_][A-Za-z0-9_.-]*)\.json$/;

export function parseMetadataFileName(fileName: string): MetadataFileName | undefined {
  if (!isTag(fileName)) return undefined;
  if (fileName === TIMESTAMP_FILE_NAME) return { fileName, role: 'timestamp' };
  const m = VERSIONED.exec(fileName);
  if (!m || m[1] === undefined || m[2] === undefined) return undefined;
  const version = Number(m[1]);
  if (!Number.isSafeInteger(version) || m[2] === 'timestamp') return undefined;
  return { fileName, role: m[2], version };
}

export function metadataFileName(role: string, version?: number): string {
  return version === undefined ? `${role}.json` : `${version}.${role}.json`;
}
