/**
 * `tufoci grant`: a one-time grant for one CI job. The repository's owner
 * delegated a role (say `ci`) to the service's CI key once, offline
 * (`tufoci delegate add <repo> ci --online`); a grant lets whoever holds its
 * token publish tags matching `--paths` under that role, with a key of the
 * job's own, until `--ttl` ends (`tufoci publish … --ephemeral`). The token is
 * printed once and is all the job needs; the service keeps only its hash.
 */
import { parseArgs } from 'node:util';
import { SERVER_HELP, SERVER_OPTIONS, UsageError, output, parseDuration, serviceClient } from '../common.ts';

export const GRANT_HELP = `usage: tufoci grant <repo> --paths 'v1.*' [--paths …] [--ttl 10m] [--role ci] [options]

Issues a one-time grant for a CI job: until the TTL ends, the job may publish
tags matching --paths under the service-held role (default ci), signing with a
key it generates itself (tufoci publish <ref> --ephemeral --grant <token>).
Prints the token (with --json, as "token"); hand it to the job as a secret,
e.g. TUFOCI_GRANT. The TTL is at most the ci policy's limit less 5 minutes.
${SERVER_HELP}`;

export async function grant(argv: string[]): Promise<void> {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: { ...SERVER_OPTIONS, paths: { type: 'string', multiple: true }, ttl: { type: 'string' }, role: { type: 'string' } },
  });
  if (values.help) return console.log(GRANT_HELP);
  const [repo, ...extra] = positionals;
  if (!repo || extra.length) throw new UsageError(`grant takes one repository\n\n${GRANT_HELP}`);
  if (!values.paths?.length) throw new UsageError("--paths is required: the tags the job may publish, e.g. --paths 'v1.*'");
  const ttlSeconds = parseDuration(values.ttl ?? '10m', '--ttl') / 1000;
  const g = await serviceClient(values).createGrant(repo, { paths: values.paths, ttlSeconds, ...(values.role ? { role: values.role } : {}) });
  const out = output(values.json ?? false);
  out.say(`grant for ${g.repository} role ${g.role}, paths ${g.paths.join(' ')}, until ${g.expires} (one use):`);
  out.say(g.token);
  out.result(g);
}
