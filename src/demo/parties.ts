/**
 * The seed demo's parties and what they own. Each party (the wabbit-networks owner and CI, globex,
 * clients, acme-rockets ops) is a directory with its own `TUFOCI_HOME` (trust store, TUF state)
 * and runs the real CLI there as a child process (`node bin/tufoci.js …`, told as `tufoci …`).
 * Owner and CI reach the service through TUFOCI_SERVER and TUFOCI_TOKEN; the others have no
 * service settings. Keys and roots move between parties by copying files, as out of band.
 */
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { CliRun } from './narrator.ts';
import type { RegistryProcess } from './registry-process.ts';
import { OnStage } from './stage.ts';

export const REPO = 'wabbit-networks/net-monitor';
export const TUF_REPO = `${REPO}/tuf`;
/** Another publisher's repository on the same service (a foreign root; the mix-and-match source). */
export const OTHER_REPO = 'globex/net-logger';
/** wabbit-networks' namespace (step 8): one root for every repository under the prefix. */
export const NAMESPACE = 'wabbit-networks/';
/** The namespace's two members: net-scanner is mirrored to acme-rockets (step 9), net-dashboard is not. */
export const SCANNER = 'wabbit-networks/net-scanner';
export const DASHBOARD = 'wabbit-networks/net-dashboard';
/** Where a repository's TUF metadata lives in a registry. */
export const tufRepo = (repository: string): string => `${repository}/tuf`;

const CLI = fileURLToPath(new URL('../../bin/tufoci.js', import.meta.url));

export interface Party {
  name: string;
  dir: string;
  home: string;
  /** Talks to the service (TUFOCI_SERVER, TUFOCI_TOKEN). */
  service: boolean;
}

/** An image reference on `registry`: `<host>/wabbit-networks/net-monitor:<tag>` (or another repository's). */
export const ref = (registry: RegistryProcess, tag = 'v1', repository = REPO): string => `${registry.host}/${repository}:${tag}`;

export class Parties extends OnStage {

  /** A new party: its directory and TUFOCI_HOME under the stage's temporary directory. */
  party(name: string, service: boolean): Party {
    const dir = join(this.stage.tmp, name);
    const home = join(dir, '.tufoci');
    mkdirSync(home, { recursive: true, mode: 0o700 });
    return { name, dir, home, service };
  }

  #env(party: Party): NodeJS.ProcessEnv {
    const env: NodeJS.ProcessEnv = {};
    for (const [k, v] of Object.entries(process.env)) if (!k.startsWith('TUFOCI_') && !k.startsWith('DOCKER_') && v !== undefined) env[k] = v;
    env['TUFOCI_HOME'] = party.home;
    env['DOCKER_CONFIG'] = join(party.dir, '.docker'); // no credentials: loopback registries are open
    if (party.service) {
      env['TUFOCI_SERVER'] = this.stage.serviceUrl;
      env['TUFOCI_TOKEN'] = this.stage.token;
    }
    return env;
  }

  /** Run `tufoci <args>` as `party`; print the command (and, with `echo`, its output). */
  async tufoci(party: Party, args: string[], opts: { echo?: boolean; display?: string } = {}): Promise<CliRun> {
    const command = `tufoci ${opts.display ?? args.map((a) => (/[*\s]/.test(a) ? `'${a}'` : a)).join(' ')}`;
    this.narrator.say(`   ${party.name}$ ${command}`);
    const r = await this.stage.exec(process.execPath, [CLI, ...args], party.dir, this.#env(party));
    if (opts.echo !== false && r.code === 0) for (const line of r.stdout.trimEnd().split('\n')) if (line) this.narrator.say(`     ${line}`);
    return { command, ...r };
  }
}
