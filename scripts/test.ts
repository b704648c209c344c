/**
 * The whole test suite: `npm test`.
 *
 * 1. Makes sure the system packages the integration tests start are installed
 *    (docker-registry, redis-server, skopeo; python3-securesystemslib for the
 *    oracle tests; docker-credential-pass with pass and gnupg, and openssl,
 *    for the credential helper and private-CA tests; softhsm2 for the PKCS#11
 *    tests). When one is missing and we are root on Debian, it
 *    installs it with apt-get; otherwise it stops with the command to run. Tests never skip for a missing server.
 * 2. Runs vitest (default reporter on the terminal, JSON reporter to a file).
 * 3. Prints the plain closing line `N passed, N failed` derived from the JSON
 *    report, and exits non-zero when anything failed or nothing ran.
 */
import { spawnSync } from 'node:child_process';
import { readFileSync, rmSync, writeFileSync } from 'node:fs';
import { DOCKER_CREDENTIAL_PASS, DOCKER_REGISTRY, GNUPG, OPENSSL, PASS, PYTHON3_SECURESYSTEMSLIB, REDIS_SERVER, SKOPEO, SOFTHSM2, ensureSystemPackages } from './system-packages.ts';

const packages = ensureSystemPackages([DOCKER_REGISTRY, REDIS_SERVER, SKOPEO, PYTHON3_SECURESYSTEMSLIB, DOCKER_CREDENTIAL_PASS, PASS, GNUPG, OPENSSL, SOFTHSM2], 'the integration tests');
if (!packages.ok) {
  console.error(packages.message);
  process.exit(2);
}
const report = '.vitest-report.json';
rmSync(report, { force: true });
const vitest = spawnSync(
  process.execPath,
  ['node_modules/vitest/vitest.mjs', 'run', '--reporter=default', '--reporter=json', `--outputFile.json=${report}`, ...process.argv.slice(2)],
  { stdio: 'inherit' },
);

interface JsonReport {
  numPassedTests?: number;
  numFailedTests?: number;
  numPendingTests?: number;
  numTodoTests?: number;
  numTotalTests?: number;
}
let r: JsonReport = {};
try {
  r = JSON.parse(readFileSync(report, 'utf8')) as JsonReport;
} catch {
  console.error('vitest wrote no JSON report');
}
const passed = r.numPassedTests ?? 0;
const failed = r.numFailedTests ?? 0;
const skipped = (r.numPendingTests ?? 0) + (r.numTodoTests ?? 0);
const line = `${passed} passed, ${failed} failed${skipped ? `, ${skipped} skipped` : ''}`;
writeFileSync('.vitest-summary', `${line}\n`);
console.log(line);
const ok = vitest.status === 0 && failed === 0 && passed > 0 && skipped === 0;
process.exit(ok ? 0 : 1);
