/**
 * The seed demo as an acceptance test: the same story `npm run demo` prints
 * (src/demo/seed-story.ts), on two real docker-registry processes, the
 * tufoci service on the embedded default, the real CLI and skopeo. The story
 * checks its own expectations; here every step's outcome is asserted again
 * from the recorded runs: exit codes, digests, refusal reasons. Steps 1–7 are
 * net-monitor with a root of its own; steps 8–9 the `wabbit-networks/`
 * namespace, one of whose two members acme-rockets mirrors.
 */
import { existsSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DASHBOARD, SCANNER, SeedDemo, type SeedDemoResult } from '../../src/demo/seed-story.ts';

const lines: string[] = [];
let demo: SeedDemo;
let r: SeedDemoResult;

const firstLine = (s: string): string => s.split('\n')[0] ?? '';

beforeAll(async () => {
  demo = new SeedDemo({ say: (line) => lines.push(line), bold: false });
  try {
    r = await demo.run();
  } catch (error) {
    throw new Error(`${String(error)}\n--- transcript ---\n${lines.join('\n')}`, { cause: error });
  } finally {
    await demo.cleanup();
  }
}, 180_000);
afterAll(async () => demo?.cleanup());

describe('seed demo: wabbit-networks publishes, acme-rockets mirrors; then a namespace', () => {
  it('1–2: CI publishes v1 (build 1) after the owner created the repository and delegated ci', () => {
    expect(r.runs.publish1.code).toBe(0);
    expect(r.runs.publish1.stdout).toContain(`published wabbit-networks/net-monitor:v1 = ${r.build1.digest}`);
    // ci spreads its tags over hash bins (delegate add's default): the first publish gives ci the
    // bins delegation (timestamp v3), then the tag's bin (v4).
    expect(r.runs.publish1.stdout).toMatch(/ci-[0-9a-f]+ v1; timestamp v4/);
    expect(r.runs.publish1.command).toBe(`tufoci publish ${r.registries.wabbit}/wabbit-networks/net-monitor:v1 --role ci --key ci.key`);
  });

  it('3: a client pinning the wabbit-networks root verifies; no root or another root is refused', () => {
    expect(r.runs.verifyWabbit.code).toBe(0);
    expect(firstLine(r.runs.verifyWabbit.stdout)).toBe(r.build1.digest);
    expect(r.runs.verifyWabbit.stdout).toMatch(/signed by [0-9a-f]{12}/);
    expect(r.runs.verifyNoRoot.code).toBe(2);
    expect(r.runs.verifyNoRoot.stderr).toMatch(/no root of trust for wabbit-networks\/net-monitor/);
    expect(r.runs.verifyOtherRoot.code).toBe(1);
    // Refused before any request: the pinned root names the repository it vouches for, and it is another one.
    expect(r.runs.verifyOtherRoot.stderr).toMatch(/vouches for "globex[^"]*", not for wabbit-networks\/net-monitor/);
  });

  it('4: mirrored with skopeo (timestamp last), verified unchanged on acme-rockets with the service stopped', () => {
    expect(r.mirroredTufFiles.at(-1)).toBe('timestamp.json');
    expect(r.mirroredTufFiles).toEqual(expect.arrayContaining(['1.root.json', '1.targets.json', '2.targets.json', '1.ci.json', '3.snapshot.json']));
    expect(r.serviceRunningDuringMirrorVerify).toBe(false);
    expect(r.runs.verifyAcmeServiceStopped.command).not.toContain('--server');
    expect(r.runs.verifyAcmeServiceStopped.code).toBe(0);
    expect(firstLine(r.runs.verifyAcmeServiceStopped.stdout)).toBe(r.build1.digest);
    expect(r.runs.verifyAcmeServiceStopped.stdout).toMatch(/signed by [0-9a-f]{12}/);
    expect(r.acmeSignatureSource).toBe('tag-schema'); // docker-registry 2.8 has no referrers API
  });

  it('5: acme-rockets adds its signature; requiring both signers verifies', () => {
    expect(r.runs.verifyAcmeBothSigners.command).toContain('--sig-threshold 2');
    expect(r.runs.verifyAcmeBothSigners.code).toBe(0);
    expect(firstLine(r.runs.verifyAcmeBothSigners.stdout)).toBe(r.build1.digest);
    expect(r.runs.verifyAcmeBothSigners.stdout).toMatch(/signed by [0-9a-f]{12}, [0-9a-f]{12}/);
  });

  it('6: the rebuilt v1 is refused until acme-rockets approves it, then verifies', () => {
    expect(r.build2.digest).not.toBe(r.build1.digest);
    expect(r.runs.publish2.stdout).toContain(`= ${r.build2.digest}`);
    expect(r.runs.verifyAcmeNotApproved.code).toBe(1);
    expect(r.runs.verifyAcmeNotApproved.stderr).toContain(`${r.build2.digest} is signed by 1 of the 2 trusted key(s) required`);
    expect(r.runs.verifyAcmeBuild2.code).toBe(0);
    expect(firstLine(r.runs.verifyAcmeBuild2.stdout)).toBe(r.build2.digest);
  });

  it('7a: rollback — the old timestamp (v1 = build 1) is refused by a client that trusts the newer one', () => {
    expect(r.runs.rollback.code).toBe(1);
    const m = /the store serves timestamp (\d+), the client already trusts (\d+) \(rollback\)/.exec(r.runs.rollback.stderr);
    expect(m, r.runs.rollback.stderr).not.toBeNull();
    expect(Number(m?.[1])).toBeLessThan(Number(m?.[2]));
    expect(r.runs.rollback.stdout).not.toContain(r.build1.digest);
  });

  it('7b: mix-and-match — another repository\'s fresh timestamp and snapshot from the same service are refused (per-repository online keys)', () => {
    expect(r.runs.mixAndMatch.code).toBe(1);
    expect(r.runs.mixAndMatch.stderr).toMatch(/TUF metadata of wabbit-networks\/net-monitor refused: .*timestamp was signed by 0\/1 keys/);
  });

  it('7c: the registry tag moved back to build 1 — verify answers build 2 and says the tag disagrees', () => {
    expect(r.runs.tagMovedBack.code).toBe(0);
    expect(firstLine(r.runs.tagMovedBack.stdout)).toBe(r.build2.digest);
    expect(r.runs.tagMovedBack.stdout).not.toContain(r.build1.digest);
    expect(r.runs.tagMovedBack.stderr).toContain(`the registry's tag v1 points at ${r.build1.digest}, not the digest TUF trusts`);
  });

  it('7d: freeze — a timestamp past its expiry is refused', () => {
    expect(r.runs.freeze.code).toBe(1);
    expect(r.runs.freeze.stderr).toMatch(/timestamp\.json is expired \(freeze: metadata past its expiry\)/);
  });

  it('8: the owner creates wabbit-networks/ trust once; two repositories join; CI publishes in each; one trusted root verifies both', () => {
    const ns = r.namespace;
    expect(ns.runs.init.code).toBe(0);
    expect(ns.runs.init.command).toContain('init wabbit-networks/ ');
    for (const [join, repo] of [[ns.runs.joinScanner, SCANNER], [ns.runs.joinDashboard, DASHBOARD]] as const) {
      expect(join.code).toBe(0);
      expect(join.stdout).toContain(`${repo} joined namespace wabbit-networks/`);
    }
    expect(ns.scanner.digest).not.toBe(ns.dashboard.digest);
    expect(ns.runs.publishScanner.stdout).toContain(`published ${SCANNER}:v1 = ${ns.scanner.digest}`);
    expect(ns.runs.publishDashboard.stdout).toContain(`published ${DASHBOARD}:v1 = ${ns.dashboard.digest}`);
    for (const [run, image] of [[ns.runs.verifyScanner, ns.scanner], [ns.runs.verifyDashboard, ns.dashboard]] as const) {
      expect(run.code).toBe(0);
      expect(firstLine(run.stdout)).toBe(image.digest);
      expect(run.command).not.toContain('--trust'); // the one trust store entry answers for both
      expect(run.stdout).toMatch(/trusted through wabbit-networks\/$/m);
    }
  });

  it("9: net-scanner alone is mirrored with the namespace's metadata, and verifies unchanged on acme-rockets with the service stopped", () => {
    const ns = r.namespace;
    expect(ns.mirroredTufFiles.at(-1)).toBe('timestamp.json');
    expect(ns.mirroredTufFiles).toEqual(expect.arrayContaining(['1.targets.json', '1.ci.json']));
    expect(ns.mirroredNamespaceFiles).toEqual(expect.arrayContaining(['1.root.json']));
    expect(ns.mirroredRootIsNamespaceRoot).toBe(true);
    expect(ns.acmeRepositories).toEqual(expect.arrayContaining([SCANNER, `${SCANNER}/tuf`, 'wabbit-networks/tufoci-namespace/tuf']));
    expect(ns.acmeRepositories.filter((repo) => repo.startsWith(DASHBOARD))).toEqual([]);
    expect(ns.serviceRunningDuringMirrorVerify).toBe(false);
    expect(ns.runs.verifyAcmeScanner.command).toContain(`${r.registries.acme}/${SCANNER}:v1`);
    expect(ns.runs.verifyAcmeScanner.command).not.toContain('--server');
    expect(ns.runs.verifyAcmeScanner.code).toBe(0);
    expect(firstLine(ns.runs.verifyAcmeScanner.stdout)).toBe(ns.scanner.digest);
  });

  it("9: net-dashboard's image, signatures and metadata served as net-scanner's are refused, by a new client and by one with state", () => {
    const ns = r.namespace;
    expect(ns.passedOffTufFiles.at(-1)).toBe('timestamp.json');
    expect(ns.runs.passedOff.command).toContain('--ephemeral');
    expect(ns.runs.passedOffTrusting.command).not.toContain('--ephemeral');
    for (const run of [ns.runs.passedOff, ns.runs.passedOffTrusting]) {
      expect(run.code).toBe(1);
      expect(run.stdout).not.toContain(ns.dashboard.digest);
      expect(run.stderr).toMatch(/is for "wabbit-networks\/net-dashboard", not for wabbit-networks\/net-scanner/);
      expect(run.stderr).toContain('TUF_REFUSED');
    }
  });

  it('prints the story step by step and leaves no process or temporary directory behind', () => {
    const titles = lines.filter((l) => /^\d\. /.test(l)).map((l) => l.slice(0, 2));
    expect(titles).toEqual(['1.', '2.', '3.', '4.', '5.', '6.', '7.', '8.', '9.']);
    expect(lines.at(-1)).toBe('Done: every step verified, every attack refused with its reason.');
    expect(lines.join('\n')).not.toMatch(/PRIVATE KEY/);
    for (const pid of demo.registryPids()) expect(() => process.kill(pid, 0)).toThrow();
    expect(existsSync(demo.tmpDir)).toBe(false);
  });
});
