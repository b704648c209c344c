/**
 * The online keyring on disk: per-repository derived keys, shared by every
 * instance that opens the same directory; file modes; concurrent creation;
 * old data directories (snapshot.key/timestamp.key) kept as a shared set.
 */
import { chmodSync, mkdirSync, mkdtempSync, readFileSync, statSync, utimesSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { generateKeyFiles } from '../../src/keys/index.ts';
import { OnlineKeyring } from '../../src/keys/online-keyring.ts';

const fresh = (): string => join(mkdtempSync(join(tmpdir(), 'tufoci-keyring-')), 'keys');

describe('online keyring', () => {
  it('derives distinct keys per repository and role, the same in every instance sharing the directory', async () => {
    const dir = fresh();
    const [a, b] = await Promise.all([OnlineKeyring.open({ dir }), OnlineKeyring.open({ dir })]); // concurrent first start
    expect(a.current().id).toBe(0);
    expect(a.current().kind).toBe('derived');
    const ka = a.current('acme/net-monitor').keys;
    const kb = b.current('acme/net-monitor').keys;
    expect(ka.timestamp?.keyid).toBe(kb.timestamp?.keyid);
    expect(ka.snapshot?.keyid).toBe(kb.snapshot?.keyid);
    expect(new Set([ka.snapshot?.keyid, ka.timestamp?.keyid, ka.ci?.keyid]).size).toBe(3);
    expect(a.current('acme/net-logger').keys.timestamp?.keyid).not.toBe(ka.timestamp?.keyid);
    expect(a.current().keys.timestamp).toBeUndefined(); // derived: no repository, no keys
    const master = join(dir, 'set-0', 'master.key');
    expect(statSync(master).mode & 0o777).toBe(0o600);
    expect(readFileSync(master, 'utf8')).toMatch(/^# tufoci online key master secret/);
    // A signature by the derived key verifies under its public key (it is a real ed25519 key).
    const signer = a.signers('acme/net-monitor').timestamp[0];
    expect((await signer?.sign(new Uint8Array([1, 2, 3])))?.sig).toMatch(/^[0-9a-f]{128}$/);
  });

  it('a rotation or revocation by one instance is seen by another after sync()', async () => {
    const dir = fresh();
    const a = await OnlineKeyring.open({ dir });
    const b = await OnlineKeyring.open({ dir });
    const file = join(dir, 'keyring.json');
    const before = statSync(file);
    await a.rotate();
    expect(b.current().id).toBe(0);
    // A rewrite within one tick of the file system's clock: the same modification time as before.
    utimesSync(file, before.atime, before.mtime);
    expect(await b.sync()).toBe(true);
    expect(await b.sync()).toBe(false); // nothing changed since
    expect(b.current().id).toBe(1);
    expect(b.current('r').keys.timestamp?.keyid).toBe(a.current('r').keys.timestamp?.keyid);
    // Two instances rotating "from set 1" agree on one new set.
    const [x, y] = await Promise.all([a.rotate(1), b.rotate(1)]);
    expect(x.id).toBe(2);
    expect(y.id).toBe(2);
    const { revoked, current } = await b.revoke(2, 'test');
    expect(revoked.revoked?.reason).toBe('test');
    expect(current.id).toBe(3); // the newest set was revoked: a new one
    await a.sync();
    expect(a.revokedKeys('r').map((k) => k.keyval.public)).toContain(b.sets('r').find((s) => s.id === 2)?.keys.timestamp?.key.keyval.public);
    expect(a.acceptableKeys('r')).toHaveLength(2 * 3); // sets 0, 1, 3: snapshot + timestamp each
  });

  it('refuses a master secret others can read', async () => {
    const dir = fresh();
    await OnlineKeyring.open({ dir });
    chmodSync(join(dir, 'set-0', 'master.key'), 0o644);
    await expect(OnlineKeyring.open({ dir })).rejects.toMatchObject({ code: 'KEY_FILE_PERMISSIONS', message: expect.stringMatching(/chmod 600/) });
  });

  it('keeps a data directory from before derivation: its key files become shared set 0', async () => {
    const dir = fresh();
    mkdirSync(dir, { recursive: true });
    const ts = await generateKeyFiles(join(dir, 'timestamp'), 'ed25519', 'old timestamp key');
    await generateKeyFiles(join(dir, 'snapshot'), 'ed25519', 'old snapshot key');
    const ring = await OnlineKeyring.open({ dir });
    expect(ring.current().kind).toBe('shared');
    expect(ring.current('any/repo').keys.timestamp?.keyid).toBe(ts.keyid);
    expect(ring.current().keys.ci).toBeDefined(); // generated alongside
  });
});
