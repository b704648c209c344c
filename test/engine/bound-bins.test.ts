/**
 * Hash bins bound to their repository by their keys (src/engine/bound-bins.ts): the snapshot lists
 * them by version alone exactly while ci's claim holds (it names this repository, and no other
 * role uses the bins' key), and both clients — the client core and the unmodified tuf-js Updater —
 * take a target from such a bin.
 */
import { describe, expect, it } from 'vitest';
import { BINS_SCOPE_FIELD, EngineError, parseMetadata, produceSnapshotAndTimestamp, signMetadata, verifyTargetsUpload } from '../../src/engine/index.ts';
import { SimRepo, image, signer } from '../support/engine-repo.ts';

const REPO = 'acme/app';

/** A SimRepo whose uploads and snapshots are for repository `REPO`. */
class RepoSim extends SimRepo {
  override async publish(): Promise<void> {
    const out = await produceSnapshotAndTimestamp(this.state, { ...this.online, repository: REPO });
    this.state = out.state;
    for (const f of out.files) this.files.set(f.name, f.bytes);
  }

  override async upload(role: string, bytes: Uint8Array): Promise<void> {
    this.state = verifyTargetsUpload(this.state, role, bytes, { ...this.ctx, repository: REPO }).state;
    this.files.set(`${this.version(role)}.${role}.json`, bytes);
    await this.publish();
  }

  snapshotMeta(): Record<string, Record<string, unknown>> {
    const v = this.state.snapshot?.md.signed.version;
    return (JSON.parse(Buffer.from(this.files.get(`${v}.snapshot.json`) as Uint8Array).toString()) as { signed: { meta: Record<string, Record<string, unknown>> } }).signed.meta;
  }
}

describe('repository-bound hash bins', () => {
  it('are listed by version alone while the claim holds, with length and hash again once another role uses their key; both clients verify either way', async () => {
    const repo = await new RepoSim().init();
    const binsKey = signer();
    await repo.upload('ci', await repo.targetsBytes({ version: 1, bins: { namePrefix: 'ci', bins: 4, keys: [binsKey.public], threshold: 1 } }, [repo.ciKey]).then((b) => withClaim(repo, b, REPO)));
    const bin = repo.targetsOf('ci').delegations?.succinctRoles?.getRoleForTarget('v1') as string;
    await repo.upload(bin, await repo.targetsBytes({ version: 1, targets: { v1: image(1) } }, [binsKey]));
    expect(repo.snapshotMeta()[`${bin}.json`]).toEqual({ version: 1 });
    expect(repo.snapshotMeta()['ci.json']).toMatchObject({ length: expect.any(Number), hashes: { sha256: expect.any(String) } });
    await expectFound(repo);

    // Another role of the repository comes to use the bins' key: the claim no longer holds.
    await repo.upload(
      'targets',
      await repo.targetsBytes({
        version: 2,
        delegations: [
          { name: 'ci', keys: [repo.ciKey.public], threshold: 1, paths: ['v*'], terminating: true },
          { name: 'other', keys: [binsKey.public], threshold: 1, paths: ['x*'] },
        ],
      }),
    );
    expect(repo.snapshotMeta()[`${bin}.json`]).toMatchObject({ version: 1, length: expect.any(Number), hashes: { sha256: expect.any(String) } });
    await expectFound(repo);
  });

  it('refuses a claim for another repository, for bins keyed by a key another role uses, or on a role without bins', async () => {
    const repo = await new RepoSim().init();
    const binsKey = signer();
    const ci = (keys: ReturnType<typeof signer>[], claim: string) =>
      repo.targetsBytes({ version: 1, bins: { namePrefix: 'ci', bins: 4, keys: keys.map((k) => k.public), threshold: 1 } }, [repo.ciKey]).then((b) => withClaim(repo, b, claim));
    const refusal = async (bytes: Uint8Array): Promise<EngineError> => {
      const e = await repo.upload('ci', bytes).catch((x: unknown) => x);
      expect(e).toBeInstanceOf(EngineError);
      expect((e as EngineError).code).toBe('BAD_DELEGATION');
      return e as EngineError;
    };
    expect((await refusal(await ci([binsKey], 'acme/other'))).message).toMatch(/must name this repository \("acme\/app"\)/);
    expect((await refusal(await ci([repo.ciKey], REPO))).message).toMatch(/also used by another role/);
    expect((await refusal(await ci([repo.targetsKey], REPO))).message).toMatch(/also used by another role/); // a root role's key
    const plain = await repo.targetsBytes({ version: 1, targets: { v1: image(1) } }, [repo.ciKey]).then((b) => withClaim(repo, b, REPO));
    expect((await refusal(plain)).message).toMatch(/only for a role that delegates to succinct hash bins/);
    expect(repo.version('ci')).toBe(0);
  });
});

/** `bytes` (a targets file signed by ci) with the bins claim added to `signed`, re-signed by ci. */
async function withClaim(repo: SimRepo, bytes: Uint8Array, claim: string): Promise<Uint8Array> {
  const signed = parseMetadata('targets', bytes, 1 << 20, 'ci').md.signed;
  (signed.unrecognizedFields as Record<string, unknown>)[BINS_SCOPE_FIELD] = claim;
  return signMetadata(signed, [repo.ciKey]);
}

async function expectFound(repo: SimRepo): Promise<void> {
  const client = repo.updater();
  await client.refresh();
  expect((await client.getTargetInfo('v1'))?.hashes).toEqual({ sha256: image(1).digest.slice(7) });
}
