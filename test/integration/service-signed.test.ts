/**
 * Service-signed tags on the deployed topology: two `tufoci serve` processes
 * over one real docker-registry and one real redis-server, sharing the online
 * keys (a CI key among them). The owner delegates `release` (r*) to that CI
 * key; 120 CI jobs POST one tag each, at once, alternating between the
 * instances. Each instance signs what queued behind its commits together
 * (group commit); the Redis lock orders the two. What must hold: every
 * publication is acknowledged, acknowledged timestamp versions never go back,
 * no 5xx, and the unmodified tuf-js Updater finds every acknowledged tag —
 * over HTTP from both instances and straight from the registry.
 */
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { buildTargets, isoExpiry, signMetadata } from '../../src/engine/index.ts';
import { generateKeyFiles } from '../../src/keys/index.ts';
import { startRedis } from '../support/redis-server.ts';
import { startTufoci } from '../support/tufoci-process.ts';
import { ADMIN_TOKEN, CI_TOKEN, TOKENS, imageFor, logProblemsOnFailure, useFleet, verifyWithTuf } from './fleet.ts';

const REPO = 'it/signed/app';
const JOBS = 120;
const fleet = useFleet();

describe('service-signed tags across two instances', () => {
  it('120 concurrent publications over both instances: all acknowledged, none lost, verified by tuf-js from both and from the registry', async () => {
    const { registry, keys, owner } = fleet;
    const ci = await generateKeyFiles(join(keys.dir, 'ci'), 'ed25519', 'integration test online CI key');
    const redis = await startRedis();
    const common = { registry: registry.url, redis: redis.url, tokens: TOKENS, snapshotKey: keys.snapshotKey, timestampKey: keys.timestampKey, env: { TUFOCI_CI_KEY: ci.privatePath } };
    const [a, b] = await Promise.all([startTufoci({ ...common, name: 'A' }), startTufoci({ ...common, name: 'B' })]);
    logProblemsOnFailure([a, b]);
    try {
      const targets = await signMetadata(
        buildTargets({
          version: 1,
          expires: isoExpiry(Date.now() + 30 * 86_400_000),
          delegations: [
            { name: 'ci', keys: [owner.ci.public], threshold: 1, paths: ['v*'], terminating: true },
            { name: 'release', keys: [ci.public], threshold: 1, paths: ['r*'] },
          ],
        }),
        [owner.targets],
      );
      const dec = new TextDecoder();
      const created = await fetch(`${a.url}/v1/repos/${REPO}`, {
        method: 'POST',
        headers: { authorization: `Bearer ${ADMIN_TOKEN}`, 'content-type': 'application/json' },
        body: JSON.stringify({ root: JSON.parse(dec.decode(await owner.rootFor(REPO))), targets: JSON.parse(dec.decode(targets)) }),
      });
      expect(created.status, await created.text()).toBe(201);

      const statuses: number[] = [];
      const acks: Array<{ tag: string; timestampVersion: number; roleVersion: number }> = [];
      const publish = async (i: number): Promise<void> => {
        const tag = `r${String(i).padStart(3, '0')}`;
        const body = JSON.stringify({ role: 'release', tags: { [tag]: imageFor(REPO, tag) } });
        for (let attempt = 0; attempt < 30; attempt++) {
          const url = (attempt + i) % 2 === 0 ? a.url : b.url;
          const r = await fetch(`${url}/v1/repos/${REPO}/tags`, { method: 'POST', headers: { authorization: `Bearer ${CI_TOKEN}`, 'content-type': 'application/json' }, body });
          statuses.push(r.status);
          const json = (await r.json()) as { timestampVersion: number; version: number; error?: { code: string } };
          if (r.status === 201) {
            acks.push({ tag, timestampVersion: json.timestampVersion, roleVersion: json.version });
            return;
          }
          if (r.status !== 409 || json.error?.code !== 'BUSY') throw new Error(`POST ${tag}: HTTP ${r.status} ${JSON.stringify(json)}`);
          await new Promise((res) => setTimeout(res, 50 + Math.random() * 200));
        }
        throw new Error(`POST ${tag}: still busy after 30 attempts`);
      };
      await Promise.all(Array.from({ length: JOBS }, (_, i) => publish(i)));

      expect(acks).toHaveLength(JOBS);
      expect(statuses.filter((s) => s >= 500)).toEqual([]);
      // One timestamp per commit, one release version per commit: a later commit has both higher.
      const byTimestamp = [...acks].sort((x, y) => x.timestampVersion - y.timestampVersion);
      for (let i = 1; i < byTimestamp.length; i++) {
        const [prev, cur] = [byTimestamp[i - 1], byTimestamp[i]] as [(typeof acks)[0], (typeof acks)[0]];
        if (cur.timestampVersion > prev.timestampVersion) expect(cur.roleVersion).toBeGreaterThan(prev.roleVersion);
        else expect(cur.roleVersion).toBe(prev.roleVersion);
      }
      const commits = new Set(acks.map((x) => x.timestampVersion)).size;
      console.log(`service-signed: ${JOBS} publications in ${commits} commits over two instances`);

      const expected = new Map(acks.map((x) => [x.tag, imageFor(REPO, x.tag)]));
      for (const source of [a.url, b.url, { registry: registry.url }]) {
        const check = await verifyWithTuf(source, REPO, await owner.rootFor(REPO), expected);
        expect({ missing: check.missing, wrong: check.wrong }).toEqual({ missing: [], wrong: [] });
      }
    } finally {
      await Promise.all([a.stop(), b.stop()]);
      await redis.close();
    }
  }, 120_000);
});
