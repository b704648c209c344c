/**
 * The checks the multi-instance tests make, each returning a list of
 * problems (empty when the property holds) so that assertion messages name
 * the repository, instance and version concerned.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { readTimestamp, storedTimestampVersion, verifyWithTuf, type Ack, type Endpoint, type Owner, type Traffic, type UploadOutcome, type Uploader } from './fleet.ts';

export const pad = (n: number): string => String(n).padStart(3, '0');

/** Uploads that were never acknowledged, with their last answers. */
export function failures(outcomes: readonly UploadOutcome[]): string[] {
  return outcomes.filter((o) => !o.ack).map((o) => `${o.job.repo} ${o.job.tag}: ${o.failure} [${o.codes.slice(-4).join(', ')}]`);
}

/** Acknowledged new versions (201) of one repository, by ci version: each acknowledged once, timestamp versions increasing with them. */
export function timestampOrder(repo: string, acks: readonly Ack[]): string[] {
  const created = acks.filter((a) => a.status === 201).sort((x, y) => x.ciVersion - y.ciVersion);
  const problems: string[] = [];
  for (let i = 1; i < created.length; i++) {
    const [p, c] = [created[i - 1] as Ack, created[i] as Ack];
    if (c.ciVersion === p.ciVersion) problems.push(`${repo}: ci version ${c.ciVersion} acknowledged as new twice (${p.tag}, ${c.tag})`);
    else if (c.timestampVersion <= p.timestampVersion) problems.push(`${repo}: ci ${p.ciVersion} acknowledged with timestamp ${p.timestampVersion}, ci ${c.ciVersion} with ${c.timestampVersion}`);
  }
  return problems;
}

/**
 * No acknowledged upload lost: every acknowledged tag of every repository is
 * in the registry, as a fresh tuf-js Updater reading the registry directly
 * (no service, no cache) resolves it.
 */
export async function verifyStored(registryUrl: string, owner: Owner, uploader: Uploader, repos: readonly string[]): Promise<string[]> {
  const problems: string[] = [];
  for (const repo of repos) {
    const expected = uploader.acknowledged(repo);
    try {
      const check = await verifyWithTuf({ registry: registryUrl }, repo, await owner.rootFor(repo), expected);
      if (check.missing.length) problems.push(`${repo}: ${check.missing.length} of ${expected.size} acknowledged tags are not in the registry (${check.missing.slice(0, 5).join(' ')})`);
      if (check.wrong.length) problems.push(`${repo}: the registry has other targets for ${check.wrong.slice(0, 5).join(' ')}`);
    } catch (error) {
      problems.push(`${repo}: tuf-js refused the registry's metadata: ${String(error)}`);
    }
  }
  return problems;
}

/**
 * Every acknowledged tag of every repository, through a fresh tuf-js Updater
 * over each instance. A miss names the timestamp version the instance served
 * and the one the registry holds, to tell lost data from a stale cache.
 */
export async function verifyAll(eps: readonly Endpoint[], owner: Owner, uploader: Uploader, repos: readonly string[], registryUrl: string): Promise<string[]> {
  const problems: string[] = [];
  for (const ep of eps) {
    for (const repo of repos) {
      const expected = uploader.acknowledged(repo);
      try {
        const check = await verifyWithTuf(ep.url, repo, await owner.rootFor(repo), expected);
        if (check.missing.length) {
          const stored = await storedTimestampVersion(registryUrl, repo);
          const why = stored > check.timestampVersion ? 'a stale head: the registry has newer' : 'not in the registry either: lost';
          problems.push(
            `${ep.name} ${repo}: ${check.missing.length} of ${expected.size} acknowledged tags missing (${check.missing.slice(0, 5).join(' ')}); ${ep.name} served timestamp ${check.timestampVersion}, the registry holds ${stored} (${why})`,
          );
        }
        if (check.wrong.length) problems.push(`${ep.name} ${repo}: wrong target for ${check.wrong.slice(0, 5).join(' ')}`);
      } catch (error) {
        problems.push(`${ep.name} ${repo}: tuf-js refused: ${String(error)}`);
      }
    }
  }
  return problems;
}

/**
 * Once writes have stopped, every instance serves the same, newest
 * timestamp.json of every repository. Head changes reach the other instances
 * by pub/sub within milliseconds; 10 s is a generous bound.
 */
export async function sameTimestampEverywhere(traffic: Traffic, eps: readonly Endpoint[], repos: readonly string[], boundMs = 10_000): Promise<string[]> {
  const deadline = Date.now() + boundMs;
  for (;;) {
    const problems: string[] = [];
    for (const repo of repos) {
      const seen = await Promise.all(eps.map(async (ep) => ({ ep: ep.name, version: (await readTimestamp(traffic, ep, repo)).version })));
      const newest = Math.max(...seen.map((s) => s.version));
      for (const s of seen) if (s.version !== newest) problems.push(`${repo}: ${s.ep} serves timestamp ${s.version}, another instance ${newest}`);
    }
    if (problems.length === 0 || Date.now() > deadline) return problems;
    await sleep(200);
  }
}
