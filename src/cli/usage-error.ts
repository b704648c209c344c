/** A command line that cannot run as given: printed with the usage hint, exit code 2. Its own module, so `tufoci --help` loads nothing else. */
export class UsageError extends Error {}
