/** Atomic file writes and bounded reads live in src/util/atomic-file.ts (keys use them too); re-exported for the storage backends. */
export { writeFileAtomic, syncDirectory, readFileBounded, isErrno, type AtomicWriteOptions, type BoundedRead } from '../util/atomic-file.ts';
