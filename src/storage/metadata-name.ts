/**
 * TUF metadata file names as OCI tags. tufoci stores consistent-snapshot
 * repositories only, so every file is `<version>.<role>.json` except the one
 * moving pointer, `timestamp.json`. Both forms must also be valid OCI tags
 * (`[A-Za-z0-9_][A-Za-z0-9._-]{0,127}`), which restricts role names to
 * `[A-Za-z0-9_][A-Za-z0-9_.-]*`. The version is the leading digits up to the
 * first dot, so `3.7.json` is version 3 of role "7": parsing is unambiguous.
 */
import { clip } from './names.ts';
import { parseMetadataFileName, type MetadataFileName } from '../oci/names.ts';
import { StorageError } from './storage-error.ts';

export { TIMESTAMP_FILE_NAME, metadataFileName, parseMetadataFileName, type MetadataFileName } from '../oci/names.ts';

export function assertMetadataFileName(backend: string, repository: string, fileName: string): MetadataFileName {
  const parsed = parseMetadataFileName(fileName);
  if (!parsed) {
    throw new StorageError(
      'INVALID_NAME',
      `"${clip(fileName)}" is not a storable TUF file name: use <version>.<role>.json (role of A-Z a-z 0-9 _ . -, version from 1, at most 128 characters in all) or timestamp.json`,
      { backend, repository, reference: clip(fileName) },
    );
  }
  return parsed;
}
