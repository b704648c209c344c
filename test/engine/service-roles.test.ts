/**
 * The write rules of service-held roles, as pure functions over a state: the next version of a
 * held role, the client's search order applied to tags about to be listed, the target-count
 * rules, the parent dropping a tag a job re-lists, and what a refresh re-signs when.
 */
import { describe, expect, it } from 'vitest';
import { buildTargets, isoExpiry, signMetadata, type ImageTarget } from '../../src/engine/build.ts';
import { jobRoleName } from '../../src/engine/jobs.ts';
import {
  binsToAdopt,
  checkBinCapacity,
  checkHeldRoleCapacity,
  delegateJob,
  dropTargets,
  editServiceRole,
  endedJobs,
  entriesByBin,
  listTargets,
  nextRefreshAt,
  parentShadowedTags,
  refreshPlan,
  tagShadowing,
  targetEntries,
} from '../../src/engine/service-roles.ts';
import { verifyTargetsUpload, type RepoState } from '../../src/engine/index.ts';
import type { Policy } from '../../src/policy/policy.ts';
import { DAY, SimRepo, image, policy, signer } from '../support/engine-repo.ts';

const small: Policy = { ...policy, limits: { ...policy.limits, maxTargetsPerRole: 2 } };

/** Sign the next version of held role `role` with `edit` (as the service does) and accept it. */
async function signHeld(repo: SimRepo, role: string, edit: Parameters<typeof editServiceRole>[2], state: RepoState = repo.state): Promise<RepoState> {
  const signed = editServiceRole(state, role, edit, { now: repo.now, policy });
  const bytes = await signMetadata(signed, [repo.ciKey]);
  return verifyTargetsUpload(state, role, bytes, repo.ctx).state;
}

const tags = (...names: string[]): Map<string, ImageTarget> => new Map(names.map((n, i) => [n, image(i + 1)]));

describe('the next version of a service-held role', () => {
  it('is one above the current version, expires the default online lifetime after now, and leaves the state it came from alone', async () => {
    const repo = await new SimRepo().init();
    const first = editServiceRole(repo.state, 'ci', listTargets(targetEntries(tags('v1'))), { now: repo.now, policy });
    expect(first.version).toBe(1); // never signed before: built from nothing
    expect(Date.parse(first.expires)).toBe(repo.now + policy.roles.snapshot.expiresDefaultMinutes * 60_000);
    expect(Object.keys(first.targets)).toEqual(['v1']);
    const state = await signHeld(repo, 'ci', listTargets(targetEntries(tags('v1', 'v2'))));
    const next = editServiceRole(state, 'ci', dropTargets(['v1']), { now: repo.now + DAY, policy });
    expect(next.version).toBe(2);
    expect(Object.keys(next.targets)).toEqual(['v2']);
    expect(Object.keys(state.targets.get('ci')?.md.signed.targets ?? {})).toEqual(['v1', 'v2']);
  });
});

describe('tags a client would not take from the role', () => {
  it('names the earlier role that lists a tag, or none when a terminating delegation ends the search first', async () => {
    const early = signer();
    const repo = await new SimRepo().init({
      targets: { v1: image(9) },
      delegations: [
        { name: 'early', keys: [early.public], threshold: 1, paths: ['v9*'], terminating: true },
        { name: 'ci', keys: [new SimRepo().ciKey.public], threshold: 1, paths: ['v*'], terminating: true },
      ],
    });
    expect(tagShadowing(repo.state, 'ci', ['v2', 'v1'])).toEqual({ tag: 'v1', listedBy: 'targets' });
    expect(tagShadowing(repo.state, 'ci', ['v2', 'v90'])).toEqual({ tag: 'v90' });
    expect(tagShadowing(repo.state, 'ci', ['v2', 'v3'])).toBeUndefined();
  });
});

describe('target counts', () => {
  it('a held role with job roles cannot grow beyond the limit (bins cannot hold job roles); one without moves to hash bins instead', async () => {
    const repo = await new SimRepo().init();
    const jobKey = signer();
    const job = { jobRole: jobRoleName(repo.now + DAY, 'abcdef01'), key: jobKey.public, paths: ['v*'] };
    const withJob = await signHeld(repo, 'ci', delegateJob(repo.state, [], job));
    expect(() => checkHeldRoleCapacity(withJob, 'ci', ['v1', 'v2'], undefined, small)).not.toThrow();
    expect(() => checkHeldRoleCapacity(withJob, 'ci', ['v1', 'v2'], new Set(['v3']), small)).toThrow(expect.objectContaining({ code: 'POLICY_VIOLATION', detail: { role: 'ci', count: 3, limit: 2 } }));
    // Tags already listed or already pending are not counted twice.
    expect(() => checkHeldRoleCapacity(withJob, 'ci', ['v1', 'v1'], new Set(['v1']), small)).not.toThrow();
    expect(binsToAdopt(withJob, 'ci', ['v1', 'v2', 'v3'], small)).toBeUndefined();

    const plain = await signHeld(repo, 'ci', listTargets(targetEntries(tags('v1', 'v2'))));
    expect(() => checkHeldRoleCapacity(plain, 'ci', ['v3', 'v4'], undefined, small)).not.toThrow();
    expect(binsToAdopt(plain, 'ci', ['v2'], small)).toBeUndefined(); // still fits
    const bins = binsToAdopt(plain, 'ci', ['v3'], small);
    expect(bins).toBeGreaterThanOrEqual(2);
    expect(Math.log2(bins as number) % 1).toBe(0);
  });

  it('groups entries by hash bin and refuses a bin above the limit', () => {
    const built = buildTargets({ version: 1, expires: isoExpiry(0), bins: { namePrefix: 'ci', bins: 4, keys: [signer().public], threshold: 1 } });
    const succinct = built.delegations?.succinctRoles;
    if (!succinct) throw new Error('no bins');
    const entries = targetEntries(tags('v1', 'v2', 'v3', 'v4', 'v5'));
    const byBin = entriesByBin(succinct, entries);
    expect([...byBin.values()].flat().map(([t]) => t).sort()).toEqual(['v1', 'v2', 'v3', 'v4', 'v5']);
    for (const [bin, list] of byBin) for (const [tag] of list) expect(succinct.getRoleForTarget(tag)).toBe(bin);
    const empty = { targets: new Map() } as unknown as RepoState;
    expect(() => checkBinCapacity(empty, 'ci-0', 2, small)).not.toThrow();
    expect(() => checkBinCapacity(empty, 'ci-0', 3, small)).toThrow(expect.objectContaining({ code: 'POLICY_VIOLATION', detail: { role: 'ci-0', count: 3, limit: 2 } }));
  });
});

describe('jobs', () => {
  it('a job re-listing a tag its held parent lists makes the parent drop it; other tags and other roles are left alone', async () => {
    const repo = await new SimRepo().init();
    const jobKey = signer();
    const job = { jobRole: jobRoleName(repo.now + DAY, '0123abcd'), key: jobKey.public, paths: ['v*'] };
    let state = await signHeld(repo, 'ci', listTargets(targetEntries(tags('v1', 'v2'))));
    state = await signHeld(repo, 'ci', delegateJob(state, [], job), state);
    const jobBytes = await signMetadata(buildTargets({ version: 1, expires: isoExpiry(repo.now + 30 * 60_000), targets: { v2: image(7), v3: image(8) } }), [jobKey]);
    state = verifyTargetsUpload(state, job.jobRole, jobBytes, repo.ctx, { roleClass: 'ci' }).state;
    const ciKeyIds = new Set([repo.ciKey.keyid]);
    expect(parentShadowedTags(state, job.jobRole, ciKeyIds)).toEqual({ parent: 'ci', tags: ['v2'] });
    expect(parentShadowedTags(state, job.jobRole, new Set())).toBeUndefined(); // the parent is not the service's
    expect(parentShadowedTags(state, 'ci', ciKeyIds)).toBeUndefined(); // not a job role
  });

  it('a refresh is due when a job ends or a held role nears expiry, and nextRefreshAt names the earliest', async () => {
    const repo = await new SimRepo().init();
    const endsAt = repo.now + 60 * 60_000;
    const job = { jobRole: jobRoleName(endsAt, 'feedbeef'), key: signer().public, paths: ['v*'] };
    const state = await signHeld(repo, 'ci', delegateJob(repo.state, [], job));
    const ciKeyIds = new Set([repo.ciKey.keyid]);
    const jobEnd = Math.ceil(endsAt / 1000) * 1000;
    expect(nextRefreshAt(state, ciKeyIds, policy)).toBeLessThanOrEqual(jobEnd);
    // Without the service's keys the role is not held: only snapshot and timestamp count.
    expect(nextRefreshAt(state, new Set(), policy)).toBe(nextRefreshAt(repo.state, new Set(), policy));
    expect(endedJobs(state, 'ci', jobEnd - 1)).toEqual([]);
    expect(refreshPlan(state, ciKeyIds, policy, repo.now)).toEqual({ services: [], snapshot: false, timestamp: false });
    const atEnd = refreshPlan(state, ciKeyIds, policy, jobEnd);
    expect(atEnd.services).toEqual([{ role: 'ci', ended: [job.jobRole] }]);
    expect(atEnd.snapshot).toBe(true); // a held role re-signed means a new snapshot
  });
});
