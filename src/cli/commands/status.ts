/**
 * `tufoci status` and `tufoci expiring`: what the service reports about roles. Their own module,
 * light on imports (the service client, no engine), so that they start fast; the key-id repair
 * hints live here too because status prints them (resign re-exports them).
 */
import { parseArgs } from 'node:util';
import type { LegacyKeyListing } from '../../engine/legacy-keyids.ts';
import { SERVER_HELP, SERVER_OPTIONS, UsageError, output, parseDuration, serviceClient } from '../common.ts';

/** The command that repairs `l`, for `tufoci status`. */
export function repairCommand(repo: string, l: LegacyKeyListing): string {
  const rotate = `tufoci rotate root ${repo} --old-key <root key> --new-key <root key>`;
  if (l.listedIn === 'root') {
    return l.roles.includes('targets') ? `tufoci resign ${repo} --role targets --key <targets key>, then ${rotate}` : rotate;
  }
  const child = (r: string): string => r.replace(/-\*$/, '');
  return `${l.roles.map((r) => `tufoci resign ${repo} --role ${child(r)} --key <${child(r)} key>`).join(', ')}, then tufoci resign ${repo} --role ${l.listedIn} --key <${l.listedIn} key>`;
}

/** One warning line per key listed under a legacy id. */
export function legacyWarnings(repo: string, listings: readonly LegacyKeyListing[]): string[] {
  return listings.map(
    (l) =>
      `warning: ${l.listedIn} lists the key of ${l.roles.join(', ')} under key id ${l.keyid}, the id tufoci wrote before it followed the TUF specification; ` +
      `its key id is ${l.expected}. Repair: ${repairCommand(repo, l)}`,
  );
}

export const STATUS_HELP = `usage: tufoci status <repo> [--server URL] [--json]
       tufoci status <prefix>/ [--server URL] [--json]

Each role's version, expiry, keys and threshold, and who signs it. A prefix
ending in / names a namespace: the status of its anchor, which keeps its root.
${SERVER_HELP}`;

export async function status(argv: string[]): Promise<void> {
  const { values, positionals } = parseArgs({ args: argv, allowPositionals: true, options: SERVER_OPTIONS });
  if (values.help) return console.log(STATUS_HELP);
  const [repo, ...extra] = positionals;
  if (!repo || extra.length) throw new UsageError(STATUS_HELP);
  const s = await serviceClient(values).status(repo.endsWith('/') ? `${repo}tufoci-namespace` : repo);
  const out = output(values.json ?? false);
  out.say(`${s.repository}${s.namespace !== undefined ? `  (namespace ${s.namespace}${s.repository === `${s.namespace}tufoci-namespace` ? ': its anchor' : ''})` : ''}`);
  for (const r of s.roles) {
    const days = (r.expiresInSeconds / 86_400).toFixed(1);
    out.say(`  ${r.role.padEnd(12)} v${String(r.version).padEnd(5)} expires ${r.expires} (${days} d)  ${r.threshold} of ${r.keyids.length} key(s), ${r.signedBy}`);
  }
  for (const t of s.tombstones) out.say(`  ${t.role.padEnd(12)} v${t.version} (no longer delegated or verifiable)`);
  for (const line of legacyWarnings(repo, s.legacyKeyIds)) out.say(line);
  out.result({ ...s, legacyKeyIds: s.legacyKeyIds.map((l) => ({ ...l, repair: repairCommand(repo, l) })) });
}

export const EXPIRING_HELP = `usage: tufoci expiring --within 30d [--server URL] [--json]

Lists every role of every repository that expires within the window. Exits 1
when an offline role (root, targets, a delegation) does — a cron job's alarm;
online roles (snapshot, timestamp) are re-signed by the service and only listed.
A namespace's root is listed once, at its anchor, not for every member.
${SERVER_HELP}`;

export async function expiring(argv: string[]): Promise<void> {
  const { values, positionals } = parseArgs({ args: argv, allowPositionals: true, options: { ...SERVER_OPTIONS, within: { type: 'string' } } });
  if (values.help) return console.log(EXPIRING_HELP);
  if (positionals.length) throw new UsageError(EXPIRING_HELP);
  const windowSeconds = parseDuration(values.within ?? '30d', '--within') / 1000;
  const client = serviceClient(values);
  const found: Array<{ repository: string; role: string; version: number; expires: string; expiresInSeconds: number; signedBy: string }> = [];
  for (const repository of await client.repositories()) {
    const s = await client.status(repository);
    // A member's root is its namespace's: reported once, at the anchor.
    const member = s.namespace !== undefined && repository !== `${s.namespace}tufoci-namespace`;
    for (const r of s.roles) if (r.expiresInSeconds <= windowSeconds && !(member && r.role === 'root')) found.push({ repository, role: r.role, version: r.version, expires: r.expires, expiresInSeconds: r.expiresInSeconds, signedBy: r.signedBy });
  }
  const out = output(values.json ?? false);
  for (const f of found) out.say(`${f.repository}  ${f.role} v${f.version} expires ${f.expires}${f.expiresInSeconds < 0 ? ' (EXPIRED)' : ''}  ${f.signedBy}`);
  const offline = found.filter((f) => f.signedBy === 'offline');
  out.say(offline.length ? `${offline.length} offline role(s) expire within ${values.within ?? '30d'}: re-sign them` : `no offline role expires within ${values.within ?? '30d'}`);
  out.result(found);
  if (offline.length) process.exitCode = 1;
}
