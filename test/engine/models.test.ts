/** The linear (de)serializers produce exactly what @tufjs/models' own fromJSON/toJSON produce. */
import { Metadata, MetadataKind, type Targets } from "@tufjs/models";
import { canonicalize } from '@tufjs/canonical-json';
import { describe, expect, it } from 'vitest';
import { metadataToJSON, signedFromJSON, signedToJSON } from '../../src/engine/models.ts';
import { SimRepo, image } from '../support/engine-repo.ts';

describe('linear model (de)serialization', () => {
  it('matches the models on every file of a repository', async () => {
    const repo = await new SimRepo().init({ targets: { latest: image(1), other: image(2) } });
    await repo.upload('ci', await repo.targetsBytes({ version: 1, targets: { v1: image(3) } }, [repo.ciKey]));
    for (const [name, bytes] of repo.files) {
      const json = JSON.parse(new TextDecoder().decode(bytes));
      const kind = json.signed._type as MetadataKind;
      const theirs = (Metadata.fromJSON as (k: MetadataKind, d: unknown) => Metadata<Targets>)(kind, json);
      const ours = signedFromJSON(kind, json.signed);
      expect(canonicalize(signedToJSON(ours)), name).toBe(canonicalize(theirs.signed.toJSON()));
      expect(canonicalize(metadataToJSON(theirs)), name).toBe(canonicalize(theirs.toJSON()));
    }
  });

  it('keeps the models\' defaults for absent targets and meta', () => {
    const t = signedFromJSON('targets', { _type: 'targets', spec_version: '1.0.31', version: 1, expires: '2030-01-01T00:00:00Z' });
    expect(signedToJSON(t)['targets']).toEqual({});
    const s = signedFromJSON('snapshot', { _type: 'snapshot', spec_version: '1.0.31', version: 1, expires: '2030-01-01T00:00:00Z' });
    expect(signedToJSON(s)['meta']).toEqual({ 'targets.json': { version: 1 } });
  });
});
