import { canonicalSignedBytes } from '../../src/engine/canonical.ts';
/**
 * One test per attack on the engine. Every refusal must be a typed EngineError
 * with the expected code, and must leave the trusted state unchanged.
 */
import { describe, expect, it } from 'vitest';
import {
  EngineError,
  buildRoot,
  buildTargets,
  loadRepositoryState,
  produceSnapshotAndTimestamp,
  signMetadata,
  verifyRootUpload,
  verifyTargetsUpload,
  type EngineErrorCode,
  type ImageTarget,
  type RepoState,
} from '../../src/engine/index.ts';
import { computeKeyId } from '../../src/keys/index.ts';
import { DAY, SimRepo, image, signer } from '../support/engine-repo.ts';

function refuses(fn: () => unknown, code: EngineErrorCode): EngineError {
  try {
    fn();
  } catch (e) {
    expect(e).toBeInstanceOf(EngineError);
    expect((e as EngineError).code).toBe(code);
    return e as EngineError;
  }
  throw new Error(`expected refusal ${code}, but it was accepted`);
}

function snapshotOf(state: RepoState): string {
  return JSON.stringify({
    root: state.root.md.signed.version,
    targets: [...state.targets].map(([r, t]) => [r, t.md.signed.version]),
    snapshot: state.snapshot?.md.signed.version,
    timestamp: state.timestamp?.md.signed.version,
  });
}

async function repoWithCi(): Promise<SimRepo> {
  const repo = await new SimRepo().init();
  await repo.upload('ci', await repo.targetsBytes({ version: 1, targets: { v1: image(1) } }, [repo.ciKey]));
  await repo.upload('ci', await repo.targetsBytes({ version: 2, targets: { v1: image(2) } }, [repo.ciKey]));
  return repo;
}

describe('rollback attacks', () => {
  it('refuses an older version of a delegated role (replaying v1 over v2)', async () => {
    const repo = await repoWithCi();
    const before = snapshotOf(repo.state);
    const old = repo.files.get('1.ci.json') as Uint8Array;
    const err = refuses(() => verifyTargetsUpload(repo.state, 'ci', old, repo.ctx), 'VERSION_ROLLBACK');
    expect(err.detail).toMatchObject({ role: 'ci', version: 1, current: 2 });
    expect(snapshotOf(repo.state)).toBe(before);
  });

  it('refuses a new file reusing the current version of targets', async () => {
    const repo = await repoWithCi();
    const same = await repo.targetsBytes({ version: 1, targets: { latest: image(9) } });
    refuses(() => verifyTargetsUpload(repo.state, 'targets', same, repo.ctx), 'VERSION_ROLLBACK');
  });

  it('refuses a root whose version is not above the trusted root', async () => {
    const repo = await repoWithCi();
    refuses(() => verifyRootUpload(repo.state, repo.files.get('1.root.json') as Uint8Array, repo.ctx), 'VERSION_ROLLBACK');
  });

  it('refuses a fast-forward (version skipping ahead)', async () => {
    const repo = await repoWithCi();
    refuses(() => verifyTargetsUpload(repo.state, 'ci', repo.files.get('2.ci.json') as Uint8Array, repo.ctx), 'VERSION_ROLLBACK');
    const far = await repo.targetsBytes({ version: 1000, targets: { v1: image(3) } }, [repo.ciKey]);
    const err = refuses(() => verifyTargetsUpload(repo.state, 'ci', far, repo.ctx), 'VERSION_SKIP');
    expect(err.detail).toMatchObject({ expected: 3 });
  });
});

describe('freeze attacks', () => {
  it('refuses an upload that is already expired', async () => {
    const repo = await repoWithCi();
    const expired = await repo.targetsBytes({ version: 3, expires: new Date(repo.now - DAY).toISOString().replace(/\.\d+Z/, 'Z') }, [repo.ciKey]);
    refuses(() => verifyTargetsUpload(repo.state, 'ci', expired, repo.ctx), 'EXPIRED');
  });

  it('refuses an upload whose expiry is beyond the policy maximum', async () => {
    const repo = await repoWithCi();
    const forever = await repo.targetsBytes({ version: 3, expires: '2099-01-01T00:00:00Z' }, [repo.ciKey]);
    refuses(() => verifyTargetsUpload(repo.state, 'ci', forever, repo.ctx), 'EXPIRY_TOO_FAR');
  });

  it('refuses a delegated upload while its delegator (trusted targets) is expired', async () => {
    const repo = await repoWithCi();
    const later = { ...repo.ctx, now: repo.now + 31 * DAY }; // targets expires after 30 days
    const next = await repo.targetsBytes({ version: 3, expires: new Date(later.now + DAY).toISOString().replace(/\.\d+Z/, 'Z') }, [repo.ciKey]);
    const err = refuses(() => verifyTargetsUpload(repo.state, 'ci', next, later), 'DELEGATOR_EXPIRED');
    expect(err.detail).toMatchObject({ delegator: 'targets' });
  });

  it('refuses a targets upload while the trusted root is expired', async () => {
    const repo = await repoWithCi();
    const later = { ...repo.ctx, now: repo.now + 366 * DAY };
    const next = await repo.targetsBytes({ version: 2, expires: new Date(later.now + DAY).toISOString().replace(/\.\d+Z/, 'Z') });
    refuses(() => verifyTargetsUpload(repo.state, 'targets', next, later), 'DELEGATOR_EXPIRED');
  });
});

describe('signature and key attacks', () => {
  it('refuses a threshold reached only by one key listed under two key ids', async () => {
    const repo = await repoWithCi();
    const k = repo.ciKey;
    // Hand-built delegation: the same public key under its real id and a fabricated one, threshold 2.
    const fake = 'f'.repeat(64);
    const targets = buildTargets({ version: 2, expires: repo.expires(30) });
    const json = targets.toJSON() as Record<string, unknown>;
    json['delegations'] = {
      keys: { [k.keyid]: k.public, [fake]: k.public },
      roles: [{ name: 'ci', keyids: [k.keyid, fake], threshold: 2, terminating: true, paths: ['v*'] }],
    };
    const bytes = await signMetadata((await import('@tufjs/models')).Targets.fromJSON(json as never), [repo.targetsKey]);
    // The key id that is not the hash of its key is refused outright...
    refuses(() => verifyTargetsUpload(repo.state, 'targets', bytes, repo.ctx), 'BAD_KEY');
    // ...and even where such a delegation is already trusted, the key counts once.
    const { verifyThreshold } = await import('../../src/engine/index.ts');
    const signed = new TextEncoder().encode('payload');
    const s1 = await k.sign(signed);
    const result = verifyThreshold('ci', signed, [s1, { keyid: fake, sig: s1.sig }], { keyIDs: [k.keyid, fake], threshold: 2 }, {
      [k.keyid]: k.public,
      [fake]: k.public,
    });
    expect(result.ok).toBe(false);
    expect(result.signed).toEqual([k.keyid]);
    expect(result.ignored).toContainEqual({ keyid: fake, reason: 'duplicate-key' });
  });

  it('refuses two signatures carrying the same key id', async () => {
    const repo = await repoWithCi();
    const bytes = await repo.targetsBytes({ version: 3 }, [repo.ciKey]);
    const json = JSON.parse(new TextDecoder().decode(bytes));
    json.signatures.push(json.signatures[0]);
    refuses(() => verifyTargetsUpload(repo.state, 'ci', new TextEncoder().encode(JSON.stringify(json)), repo.ctx), 'MALFORMED');
  });

  it('refuses a role signed by a key of another role', async () => {
    const repo = await repoWithCi();
    const bytes = await repo.targetsBytes({ version: 3, targets: { v9: image(9) } }, [repo.targetsKey, repo.snapshotKey]);
    const err = refuses(() => verifyTargetsUpload(repo.state, 'ci', bytes, repo.ctx), 'THRESHOLD_NOT_MET');
    expect(err.message).toMatch(/0 of 1/);
    expect(err.message).toContain(repo.ciKey.keyid.slice(0, 12));
  });

  it('refuses metadata modified after signing', async () => {
    const repo = await repoWithCi();
    const bytes = await repo.targetsBytes({ version: 3, targets: { v1: image(3) } }, [repo.ciKey]);
    const tampered = new TextDecoder().decode(bytes).replace(image(3).digest.slice(7), image(66).digest.slice(7));
    const err = refuses(() => verifyTargetsUpload(repo.state, 'ci', new TextEncoder().encode(tampered), repo.ctx), 'THRESHOLD_NOT_MET');
    expect(err.detail['verification']).toMatchObject({ ignored: [{ reason: 'invalid-signature' }] });
  });

  it('refuses a root rotation signed only by the new keys', async () => {
    const repo = await repoWithCi();
    const fresh = signer();
    const root2 = await repo.rootBytes(2, [fresh], [fresh]);
    const err = refuses(() => verifyRootUpload(repo.state, root2, repo.ctx), 'THRESHOLD_NOT_MET');
    expect(err.detail).toMatchObject({ which: 'trusted' });
    const ok = verifyRootUpload(repo.state, await repo.rootBytes(2, [repo.root1, fresh], [fresh]), repo.ctx);
    expect(ok.version).toBe(2);
  });

  it('refuses a root rotation signed only by the old keys', async () => {
    const repo = await repoWithCi();
    const fresh = signer();
    const r = await repo.rootBytes(2, [repo.root1], [fresh]);
    expect(refuses(() => verifyRootUpload(repo.state, r, repo.ctx), 'THRESHOLD_NOT_MET').detail).toMatchObject({ which: 'new' });
  });

  it('refuses keys of a type or scheme outside the policy', async () => {
    const repo = await repoWithCi();
    const targets = buildTargets({ version: 2, expires: repo.expires(30) });
    const json = targets.toJSON() as Record<string, unknown>;
    const rsa = { keytype: 'rsa', scheme: 'rsassa-pss-sha256', keyval: { public: '-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----' } };
    json['delegations'] = {
      keys: { [computeKeyId(rsa)]: rsa },
      roles: [{ name: 'ci', keyids: [computeKeyId(rsa)], threshold: 1, terminating: true, paths: ['v*'] }],
    };
    const bytes = await signMetadata((await import('@tufjs/models')).Targets.fromJSON(json as never), [repo.targetsKey]);
    refuses(() => verifyTargetsUpload(repo.state, 'targets', bytes, repo.ctx), 'UNSUPPORTED_KEY');
  });

  it('refuses a root naming online keys the service does not hold', async () => {
    const repo = new SimRepo();
    const other = signer();
    const root = await signMetadata(
      buildRoot({
        version: 1,
        expires: repo.expires(100),
        root: { keys: [repo.root1.public], threshold: 1 },
        targets: { keys: [repo.targetsKey.public], threshold: 1 },
        snapshot: { keys: [repo.snapshotKey.public], threshold: 1 },
        timestamp: { keys: [other.public], threshold: 1 },
      }),
      [repo.root1],
    );
    refuses(() => verifyRootUpload(undefined, root, repo.ctx), 'ONLINE_KEYS_MISSING');
  });

  it('refuses a delegation whose threshold cannot be met by distinct keys', async () => {
    const repo = await repoWithCi();
    const bytes = await repo.targetsBytes({
      version: 2,
      delegations: [{ name: 'ci', keys: [repo.ciKey.public], threshold: 2, paths: ['v*'] }],
    });
    refuses(() => verifyTargetsUpload(repo.state, 'targets', bytes, repo.ctx), 'POLICY_VIOLATION');
  });
});

describe('delegation attacks', () => {
  it('refuses a delegated role listing a target outside its paths', async () => {
    const repo = await repoWithCi();
    const bytes = await repo.targetsBytes({ version: 3, targets: { latest: image(5) } }, [repo.ciKey]);
    const err = refuses(() => verifyTargetsUpload(repo.state, 'ci', bytes, repo.ctx), 'PATH_NOT_DELEGATED');
    expect(err.detail).toMatchObject({ target: 'latest', delegator: 'targets' });
  });

  it('refuses a nested role listing a target its grandparent does not delegate', async () => {
    const repo = await repoWithCi();
    const job = signer();
    // ci (paths v*) delegates "job" for everything; job may still only publish v*.
    await repo.upload('ci', await repo.targetsBytes({ version: 3, delegations: [{ name: 'job', keys: [job.public], threshold: 1, paths: ['*'] }] }, [repo.ciKey]));
    const bytes = await repo.targetsBytes({ version: 1, targets: { latest: image(5), v5: image(5) } }, [job]);
    refuses(() => verifyTargetsUpload(repo.state, 'job', bytes, repo.ctx), 'PATH_NOT_DELEGATED');
    const ok = verifyTargetsUpload(repo.state, 'job', await repo.targetsBytes({ version: 1, targets: { v5: image(5) } }, [job]), repo.ctx);
    expect(ok.version).toBe(1);
  });

  it('refuses an upload for a role nothing delegates', async () => {
    const repo = await repoWithCi();
    refuses(() => verifyTargetsUpload(repo.state, 'rogue', repo.files.get('1.ci.json') as Uint8Array, repo.ctx), 'UNKNOWN_ROLE');
  });

  it('refuses hijacking a role name already delegated by another role', async () => {
    const repo = await repoWithCi();
    const evil = signer();
    await repo.upload('targets', await repo.targetsBytes({
      version: 2,
      delegations: [
        { name: 'ci', keys: [repo.ciKey.public], threshold: 1, paths: ['v*'] },
        { name: 'other', keys: [evil.public], threshold: 1, paths: ['x*'] },
      ],
    }));
    const hijack = await repo.targetsBytes({ version: 1, delegations: [{ name: 'ci', keys: [evil.public], threshold: 1, paths: ['*'] }] }, [evil]);
    refuses(() => verifyTargetsUpload(repo.state, 'other', hijack, repo.ctx), 'BAD_DELEGATION');
  });

  it('refuses delegating to a top-level role name or a name that is not tag-safe', async () => {
    const repo = await repoWithCi();
    for (const name of ['a/b', '../x', '-x', 'x'.repeat(101)]) {
      const bytes = await repo.targetsBytes({ version: 2, delegations: [{ name, keys: [repo.ciKey.public], threshold: 1, paths: ['v*'] }] });
      refuses(() => verifyTargetsUpload(repo.state, 'targets', bytes, repo.ctx), 'BAD_ROLE_NAME');
    }
    // Top-level names are refused while parsing (the models reject them); signatures are checked first,
    // on the plain JSON, so an unsigned edit is refused for its signature before any model is built.
    const json = JSON.parse(new TextDecoder().decode(await repo.targetsBytes({ version: 2, delegations: [{ name: 'ci', keys: [repo.ciKey.public], threshold: 1 }] })));
    json.signed.delegations.roles[0].name = 'snapshot';
    refuses(() => verifyTargetsUpload(repo.state, 'targets', new TextEncoder().encode(JSON.stringify(json)), repo.ctx), 'THRESHOLD_NOT_MET');
    json.signatures = [await repo.targetsKey.sign(canonicalSignedBytes(json.signed))];
    refuses(() => verifyTargetsUpload(repo.state, 'targets', new TextEncoder().encode(JSON.stringify(json)), repo.ctx), 'MALFORMED');
  });

  it('refuses malformed target entries', async () => {
    const repo = await repoWithCi();
    const cases: Array<Record<string, ImageTarget>> = [
      { v1: { ...image(1), mediaType: 'text/html' } },
      { v1: { ...image(1), size: 0 } },
      { v1: { ...image(1), digest: 'sha256:abcd' } },
      { 'v1/../x': image(1) },
    ];
    for (const targets of cases) {
      const bytes = await repo.targetsBytes({ version: 3, targets }, [repo.ciKey]);
      refuses(() => verifyTargetsUpload(repo.state, 'ci', bytes, repo.ctx), 'BAD_TARGET');
    }
  });
});

describe('malformed input', () => {
  it('refuses the wrong _type', async () => {
    const repo = await repoWithCi();
    refuses(() => verifyTargetsUpload(repo.state, 'ci', repo.files.get('1.root.json') as Uint8Array, repo.ctx), 'WRONG_TYPE');
    refuses(() => verifyRootUpload(repo.state, repo.files.get('2.ci.json') as Uint8Array, repo.ctx), 'WRONG_TYPE');
  });

  it('refuses an oversized file before parsing it', async () => {
    const repo = await repoWithCi();
    const huge = new Uint8Array(repo.ctx.policy.roles.delegated.maxBytes + 1).fill(0x20);
    refuses(() => verifyTargetsUpload(repo.state, 'ci', huge, repo.ctx), 'TOO_LARGE');
  });

  it('refuses malformed JSON and non-UTF-8 bytes', async () => {
    const repo = await repoWithCi();
    for (const text of ['{', '[]', '{"signed": {}, "signatures": {}}', 'null']) {
      refuses(() => verifyTargetsUpload(repo.state, 'ci', new TextEncoder().encode(text), repo.ctx), 'MALFORMED');
    }
    refuses(() => verifyTargetsUpload(repo.state, 'ci', new Uint8Array([0xff, 0xfe, 0x7b]), repo.ctx), 'MALFORMED');
  });

  it('refuses a spec version other than 1.x', async () => {
    const repo = await repoWithCi();
    const text = new TextDecoder().decode(await repo.targetsBytes({ version: 3 }, [repo.ciKey])).replace('"1.0.31"', '"2.0.0"');
    refuses(() => verifyTargetsUpload(repo.state, 'ci', new TextEncoder().encode(text), repo.ctx), 'UNSUPPORTED_SPEC_VERSION');
  });

  it('refuses metadata that clients would re-serialize differently', async () => {
    const repo = await repoWithCi();
    const md = JSON.parse(new TextDecoder().decode(await repo.targetsBytes({ version: 3 }, [repo.ciKey])));
    delete md.signed.targets; // the models re-add "targets": {}, so clients would verify other bytes
    const { canonicalize } = await import('@tufjs/canonical-json');
    md.signatures = [await repo.ciKey.sign(Buffer.from(canonicalize(md.signed)))];
    refuses(() => verifyTargetsUpload(repo.state, 'ci', new TextEncoder().encode(JSON.stringify(md)), repo.ctx), 'NOT_CANONICAL');
  });
});

describe('mix-and-match and stored state', () => {
  it('loads a consistent stored repository', async () => {
    const repo = await repoWithCi();
    const { state, problems } = loadRepositoryState(storedSync(repo), repo.ctx.policy);
    expect(problems).toEqual([]);
    expect(state.targets.get('ci')?.md.signed.version).toBe(2);
  });

  it('refuses a targets file at another version than the snapshot names', async () => {
    const repo = await repoWithCi();
    const err = refuses(() => loadRepositoryState(storedSync(repo, { ci: repo.files.get('1.ci.json') as Uint8Array }), repo.ctx.policy), 'INCONSISTENT');
    expect(err.detail).toMatchObject({ role: 'ci', expected: 2, got: 1 });
  });

  it('refuses a snapshot naming a version that does not exist', async () => {
    const repo = await repoWithCi();
    // A validly signed snapshot for ci v3, which was never stored.
    const v3 = verifyTargetsUpload(repo.state, 'ci', await repo.targetsBytes({ version: 3 }, [repo.ciKey]), repo.ctx).state;
    const forged = await produceSnapshotAndTimestamp(v3, repo.online);
    const files = storedSync(repo, { timestamp: forged.files[1]?.bytes as Uint8Array, snapshot: forged.files[0]?.bytes as Uint8Array });
    expect(refuses(() => loadRepositoryState(files, repo.ctx.policy), 'INCONSISTENT').detail).toMatchObject({ role: 'ci', expected: 3, got: 2 });
    const missing = { ...files, targets: new Map([...files.targets].filter(([r]) => r !== 'ci')) };
    expect(refuses(() => loadRepositoryState(missing, repo.ctx.policy), 'INCONSISTENT').message).toMatch(/not stored/);
  });

  it('refuses a snapshot and timestamp taken from another repository', async () => {
    const a = await repoWithCi();
    const b = await repoWithCi();
    const files = storedSync(a, { timestamp: b.files.get('timestamp.json') as Uint8Array });
    refuses(() => loadRepositoryState(files, a.ctx.policy), 'THRESHOLD_NOT_MET');
  });

  it('refuses a snapshot that does not match the timestamp', async () => {
    const repo = await repoWithCi();
    const first = repo.files.get('1.snapshot.json') as Uint8Array;
    refuses(() => loadRepositoryState(storedSync(repo, { snapshot: first }), repo.ctx.policy), 'INCONSISTENT');
  });

  function storedSync(repo: SimRepo, overrides: Partial<Record<string, Uint8Array>> = {}) {
    const snapVersion = repo.state.snapshot?.md.signed.version;
    return {
      roots: [repo.files.get('1.root.json') as Uint8Array],
      timestamp: overrides['timestamp'] ?? (repo.files.get('timestamp.json') as Uint8Array),
      snapshot: overrides['snapshot'] ?? (repo.files.get(`${snapVersion}.snapshot.json`) as Uint8Array),
      targets: new Map<string, Uint8Array>([
        ['targets', repo.files.get(`${repo.version('targets')}.targets.json`) as Uint8Array],
        ['ci', overrides['ci'] ?? (repo.files.get(`${repo.version('ci')}.ci.json`) as Uint8Array)],
      ]),
    };
  }
});
