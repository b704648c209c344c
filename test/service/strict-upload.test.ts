/**
 * Bytes that two conforming parsers could read differently are refused at
 * upload, by name, and change nothing; every count is bounded on the raw JSON
 * before a model is built; a request body cannot nest without bound.
 */
import { describe, expect, it } from 'vitest';
import { canonicalSignedBytes } from '../../src/engine/canonical.ts';
import { image } from '../support/engine-repo.ts';
import { ADMIN, CI, ServiceHarness } from './harness.ts';

const REPO = 'wabbit-networks/net-monitor';

async function ready(): Promise<ServiceHarness> {
  const h = new ServiceHarness();
  h.now = Date.parse('2027-01-15T00:00:00Z'); // so that 2027-02-30 lies inside the delegated role's expiry window
  expect((await h.create()).status).toBe(201);
  await h.request('PUT', `/v1/repos/${REPO}/metadata/1.ci.json`, { token: CI, body: await h.ciBytes(1, { v1: image(1) }) });
  return h;
}

/** Re-sign `json` as the CI key over what JavaScript reads, then write it with `edit` applied to the text. */
async function signedText(h: ServiceHarness, json: { signed: unknown; signatures: unknown[] }, edit: (text: string) => string): Promise<string> {
  json.signatures = [await h.ci.sign(canonicalSignedBytes(json.signed))];
  const text = edit(JSON.stringify(json));
  expect(text).not.toBe(JSON.stringify(json)); // the edit applied
  return text;
}

async function expectRefused(h: ServiceHarness, file: string, body: string | Uint8Array, status: number, code: string, token = CI): Promise<Record<string, unknown>> {
  const before = await h.request('GET', `/v1/repos/${REPO}/metadata/timestamp.json`);
  const r = await h.request('PUT', `/v1/repos/${REPO}/metadata/${file}`, { token, body });
  expect(r.status, JSON.stringify(r.json())).toBe(status);
  const error = r.json<{ error: { code: string; message: string; detail: Record<string, unknown> } }>().error;
  expect(error.code).toBe(code);
  expect(error.message.length).toBeGreaterThan(10);
  const after = await h.request('GET', `/v1/repos/${REPO}/metadata/timestamp.json`);
  expect(after.body.equals(before.body)).toBe(true); // nothing changed
  return error.detail;
}

describe('bytes every parser reads the same way', () => {
  it('refuses duplicate member names (JavaScript would keep the last, others the first)', async () => {
    const h = await ready();
    const json = JSON.parse(new TextDecoder().decode(await h.ciBytes(2, { v2: image(2) })));
    const body = await signedText(h, json, (t) => t.replace('"signed":{', '"signed":{"version":1,'));
    const detail = await expectRefused(h, '2.ci.json', body, 400, 'DUPLICATE_KEY');
    expect(detail['role']).toBe('ci');
  });

  it('refuses a duplicate name deep inside a validly signed file (names there are checked once the signature verified)', async () => {
    const h = await ready();
    const json = JSON.parse(new TextDecoder().decode(await h.ciBytes(2, { v2: image(2) })));
    const body = await signedText(h, json, (t) => t.replace('"custom":{', '"custom":{"mediaType":"text/plain",'));
    const detail = await expectRefused(h, '2.ci.json', body, 400, 'DUPLICATE_KEY');
    expect(detail['role']).toBe('ci');
  });

  it('refuses non-integer numbers where the specification has integers: a version 2.0, a length 3.97e2', async () => {
    const h = await ready();
    const json = JSON.parse(new TextDecoder().decode(await h.ciBytes(2, { v2: { ...image(2), size: 397 } })));
    await expectRefused(h, '2.ci.json', await signedText(h, structuredClone(json), (t) => t.replace('"version":2', '"version":2.0')), 400, 'NOT_INTEGER');
    await expectRefused(h, '2.ci.json', await signedText(h, structuredClone(json), (t) => t.replace('"length":397', '"length":3.97e2')), 400, 'NOT_INTEGER');
  });

  it('refuses an impossible calendar date that Date.parse would roll over', async () => {
    const h = await ready();
    expect(Number.isNaN(Date.parse('2027-02-30T00:00:00Z'))).toBe(false); // what the old check relied on
    const body = await h.targetsBytes({ version: 2, expires: '2027-02-30T00:00:00Z', targets: {} }, [h.ci]);
    const detail = await expectRefused(h, '2.ci.json', body, 400, 'BAD_DATE');
    expect(detail['expires']).toBe('2027-02-30T00:00:00Z');
  });

  it('refuses an unpaired surrogate escape in a target name', async () => {
    const h = await ready();
    const json = JSON.parse(new TextDecoder().decode(await h.ciBytes(2, { vX: image(2) })));
    await expectRefused(h, '2.ci.json', await signedText(h, json, (t) => t.replace('"vX"', '"v\\ud800"')), 400, 'LONE_SURROGATE');
  });
});

describe('cost bounded before anything expensive runs', () => {
  it('a targets role with thousands of delegations and a junk signature is refused on its counts, before the models see it', async () => {
    const h = await ready();
    const keys: Record<string, unknown> = {};
    const roles: unknown[] = [];
    for (let i = 0; i < 2_500; i++) {
      const id = i.toString(16).padStart(64, '0');
      keys[id] = { keytype: 'ed25519', scheme: 'ed25519', keyval: { public: id } };
      roles.push({ name: `r${i}`, keyids: [id], threshold: 1, paths: [`p${i}*`], terminating: false });
    }
    const body = JSON.stringify({
      signatures: [{ keyid: 'a'.repeat(64), sig: 'b'.repeat(128) }],
      signed: { _type: 'targets', spec_version: '1.0.31', version: 2, expires: h.expires(30), targets: {}, delegations: { keys, roles } },
    });
    const detail = await expectRefused(h, '2.targets.json', body, 422, 'POLICY_VIOLATION', ADMIN);
    // The scan stops at the 257th role: the refusal names the bound, not a count it never finished.
    expect(detail).toMatchObject({ field: 'delegations.roles', limit: 256 });
  });

  it('a junk-signed role is refused for its signature before its targets are built', async () => {
    const h = await ready();
    const targets: Record<string, unknown> = {};
    for (let i = 0; i < 3_000; i++) targets[`v${i}`] = { length: 100, hashes: { sha256: 'c'.repeat(64) }, custom: { mediaType: 'application/vnd.oci.image.manifest.v1+json' } };
    // a malformed entry deep inside would be a MALFORMED from the models; the signature is refused first
    targets['v-bad'] = { length: 'x' };
    const body = JSON.stringify({ signatures: [{ keyid: 'a'.repeat(64), sig: 'b'.repeat(128) }], signed: { _type: 'targets', spec_version: '1.0.31', version: 2, expires: h.expires(1), targets } });
    await expectRefused(h, '2.ci.json', body, 403, 'THRESHOLD_NOT_MET');
  });

  it('a 200,000-deep JSON body is refused by name, not answered 500', async () => {
    const h = new ServiceHarness();
    const deep = '['.repeat(200_000) + ']'.repeat(200_000);
    const r = await h.request('POST', `/v1/repos/${REPO}`, { token: ADMIN, body: deep });
    expect(r.status, r.body.toString().slice(0, 200)).toBe(400);
    expect(r.json<{ error: { code: string } }>().error.code).toBe('TOO_DEEP');
    const nested = `{"root": ${'{"a":'.repeat(100)}1${'}'.repeat(100)}, "targets": {}}`;
    const r2 = await h.request('POST', `/v1/repos/${REPO}`, { token: ADMIN, body: nested });
    expect(r2.json<{ error: { code: string } }>().error.code).toBe('TOO_DEEP');
    expect((await h.request('GET', `/v1/repos/${REPO}/metadata/timestamp.json`)).status).toBe(404);
  });

  it('duplicate names in a request body are refused, not resolved silently', async () => {
    const h = new ServiceHarness();
    const body = await h.createBody();
    const r = await h.request('POST', `/v1/repos/${REPO}`, { token: ADMIN, body: body.replace('{"root":', '{"targets": {}, "root":') });
    expect(r.status).toBe(400);
    expect(r.json<{ error: { code: string } }>().error.code).toBe('DUPLICATE_KEY');
  });
});
