/**
 * The package as a user gets it: `npm pack`, then `npm install ./tufoci-<v>.tgz` into an empty
 * project, once on Node 24 (the devDependency) and once on Node 22 (the npm registry's
 * node-<platform>-<arch> package, fetched once into node_modules/.cache). In each project:
 * - `npx tufoci --help` and `--version` run the built JavaScript on that Node;
 * - `npx tufoci verify` checks a tag published by the checkout's CLI into a real registry;
 * - `import { verifyImage } from 'tufoci'` from an ESM file verifies the same tag, and loads none
 *   of the service's packages (recorded by a module.registerHooks resolve hook);
 * - a TypeScript file type-checks against the shipped declarations (`tufoci` strictly, with
 *   every library checked; `tufoci/service` too, where only ioredis's own declarations need
 *   skipLibCheck).
 * The tarball holds no tests, fixtures, sources, demo or key files.
 */
import { execFile } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { delimiter, dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startServer, type RunningServer } from '../../src/main.ts';
import { RegistryStore } from '../../src/storage/index.ts';
import { runTufoci } from '../support/cli.ts';
import { pushImage, type PushedImage } from '../support/image.ts';
import { startRegistry, type RegistryServer } from '../support/registry-server.ts';

const exec = promisify(execFile);
const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const NODE22 = '22.23.3';
const REPO = 'wabbit-networks/net-monitor';
const SERVICE_ONLY = ['koa', '@koa/router', 'ioredis', 'pino', 'prom-client'];

const dir = mkdtempSync(join(tmpdir(), 'tufoci-pkg-'));
let registry: RegistryServer;
let server: RunningServer;
let image: PushedImage;
let tarball: string;
const nodes: Record<string, string> = {};

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

async function run(cmd: string, args: string[], opts: { cwd: string; env?: NodeJS.ProcessEnv }): Promise<Run> {
  try {
    const r = await exec(cmd, args, { cwd: opts.cwd, env: opts.env ?? process.env, maxBuffer: 32 * 1024 * 1024 });
    return { code: 0, stdout: r.stdout, stderr: r.stderr };
  } catch (e) {
    const err = e as { code: number | string; stdout?: string; stderr?: string };
    return { code: typeof err.code === 'number' ? err.code : 1, stdout: err.stdout ?? '', stderr: err.stderr ?? String(e) };
  }
}

/** npm, as this machine has it, with `node` on PATH being the given binary (so bins and scripts run on it). */
function envFor(node: string, extra: NodeJS.ProcessEnv = {}): NodeJS.ProcessEnv {
  return { ...process.env, PATH: `${dirname(node)}${delimiter}${process.env['PATH'] ?? ''}`, npm_config_update_notifier: 'false', ...extra };
}

async function must(r: Promise<Run>, what: string): Promise<Run> {
  const done = await r;
  if (done.code !== 0) throw new Error(`${what} failed (${done.code}):\n${done.stdout}\n${done.stderr}`);
  return done;
}

/** Node 22 from the npm registry (the binary package the `node` package installs), once per checkout. */
async function node22(): Promise<string> {
  const pkg = `node-${process.platform}-${process.arch}`;
  const prefix = join(ROOT, 'node_modules', '.cache', `tufoci-node-${NODE22}`);
  const bin = join(prefix, 'node_modules', pkg, 'bin', 'node');
  if (!existsSync(bin)) {
    mkdirSync(prefix, { recursive: true });
    writeFileSync(join(prefix, 'package.json'), '{"private":true}\n');
    await must(run('npm', ['install', '--no-audit', '--no-fund', '--no-save', '--prefer-offline', `${pkg}@${NODE22}`], { cwd: prefix, env: envFor(process.execPath) }), `npm install ${pkg}@${NODE22}`);
  }
  return bin;
}

beforeAll(async () => {
  registry = await startRegistry();
  server = await startServer({ dataDir: join(dir, 'data'), port: 0, registry: registry.url, logger: pino({ level: 'silent' }) });
  const env = { ...process.env, TUFOCI_SERVER: server.url, TUFOCI_TOKEN: readFileSync(join(dir, 'data', 'admin-token'), 'utf8').trim(), TUFOCI_HOME: join(dir, 'home') };
  const owner = join(dir, 'owner');
  mkdirSync(owner);
  const tufoci = async (...args: string[]): Promise<void> => {
    const r = await runTufoci(args, { cwd: owner, env });
    if (r.code !== 0) throw new Error(`tufoci ${args.join(' ')}: ${r.stderr}`);
  };
  image = await pushImage(new RegistryStore({ url: registry.url }), REPO, 'v1', 'packaged build');
  const host = registry.url.replace('http://', '');
  const [packed] = await Promise.all([
    must(run('npm', ['pack', '--json', '--pack-destination', dir], { cwd: ROOT, env: envFor(process.execPath) }), 'npm pack'),
    (async () => {
      for (const name of ['root', 'targets', 'ci']) await tufoci('keygen', name);
      await tufoci('init', REPO, '--root-key', 'root.key', '--targets-key', 'targets.key');
      await tufoci('delegate', 'add', REPO, 'ci', '--key', 'ci.pub', '--paths', 'v*', '--terminating', '--targets-key', 'targets.key');
      await tufoci('publish', `${host}/${REPO}:v1`, '--role', 'ci', '--key', 'ci.key');
    })(),
    node22().then((bin) => void (nodes['22'] = bin)),
  ]);
  const [{ filename, files }] = JSON.parse(packed.stdout.slice(packed.stdout.search(/^\[/m))) as [{ filename: string; files: Array<{ path: string }> }];
  tarball = join(dir, filename);
  nodes['24'] = process.execPath;
  packedFiles = files.map((f) => f.path);
}, 300_000);
afterAll(async () => {
  await server?.close();
  await registry?.stop();
});

let packedFiles: string[] = [];

describe('the packed tarball', () => {
  it('holds the built package and none of the tests, fixtures, sources or keys', () => {
    expect(packedFiles).toEqual(expect.arrayContaining(['package.json', 'bin/tufoci.js', 'dist/bin/tufoci.js', 'dist/cli/main.js', 'dist/client/index.js', 'dist/client/index.d.ts', 'dist/service/index.js', 'dist/service/index.d.ts', 'roles/default.json', 'README.md']));
    const stray = packedFiles.filter((f) => /^(test|fixtures|src|bench|scripts|deploy|docs|\.ci)\//.test(f) || f.startsWith('dist/demo/') || /\.(key|pem|tgz)$/.test(f) || f.includes('admin-token'));
    expect(stray).toEqual([]);
  });
});

describe.each(['24', '22'])('installed into an empty project on Node %s', (major) => {
  let project: string;
  let env: NodeJS.ProcessEnv;

  beforeAll(async () => {
    const node = nodes[major]!;
    expect((await must(run(node, ['--version'], { cwd: dir }), 'node --version')).stdout).toMatch(new RegExp(`^v${major}\\.`));
    project = join(dir, `project-${major}`);
    mkdirSync(project);
    writeFileSync(join(project, 'package.json'), `${JSON.stringify({ name: `consumer-${major}`, private: true, type: 'module' })}\n`);
    env = envFor(node, { TUFOCI_HOME: join(project, '.tufoci') });
    await must(run('npm', ['install', '--no-audit', '--no-fund', '--prefer-offline', tarball], { cwd: project, env }), 'npm install tufoci');
  }, 300_000);

  it('npx tufoci --help and --version run the built JavaScript on this Node', async () => {
    const help = await run('npx', ['--no-install', 'tufoci', '--help'], { cwd: project, env });
    expect(help.code, help.stderr).toBe(0);
    expect(help.stdout).toMatch(/^usage: tufoci <command>/);
    const version = await run('npx', ['--no-install', 'tufoci', '--version'], { cwd: project, env });
    expect(version.stdout.trim()).toMatch(new RegExp(`^tufoci 0\\.1\\.0 \\(Node\\.js v${major}\\.`));
    expect(existsSync(join(project, 'node_modules', 'tufoci', 'src'))).toBe(false);
  });

  it('npx tufoci verify checks the published tag against the real registry, and refuses an unknown one', async () => {
    const root = join(dir, 'owner', '1.root.json');
    const ref = `${registry.url.replace('http://', '')}/${REPO}`;
    const ok = await run('npx', ['--no-install', 'tufoci', 'verify', `${ref}:v1`, '--trust', root, '--sig-key', join(dir, 'owner', 'ci.pub')], { cwd: project, env });
    expect(ok.code, ok.stderr).toBe(0);
    expect(ok.stdout.split('\n')[0]).toBe(image.digest);
    const missing = await run('npx', ['--no-install', 'tufoci', 'verify', `${ref}:v9`, '--trust', root, '--ephemeral'], { cwd: project, env });
    expect(missing.code).toBe(1);
    expect(missing.stderr).toMatch(/v9/);
  });

  it("import { verifyImage } from 'tufoci' verifies from an ESM file, loading none of the service", async () => {
    writeFileSync(
      join(project, 'hook.mjs'),
      `import { registerHooks } from 'node:module';
const seen = [];
registerHooks({ resolve(specifier, context, next) { const r = next(specifier, context); seen.push(r.url); return r; } });
process.on('exit', () => { process.stderr.write('LOADED ' + JSON.stringify(seen) + '\\n'); });
`,
    );
    writeFileSync(
      join(project, 'verify.mjs'),
      `import { readFileSync } from 'node:fs';
import { RegistryStore, verifyImage, VerifyError } from 'tufoci';
const [url, repository, tag, root] = process.argv.slice(2);
try {
  const image = await verifyImage({ store: new RegistryStore({ url }), repository, tag, trustedRoot: readFileSync(root) });
  console.log(image.digest);
} catch (e) {
  console.log(e instanceof VerifyError ? 'VerifyError ' + e.code : 'other ' + e);
}
`,
    );
    const root = join(dir, 'owner', '1.root.json');
    const r = await run(nodes[major]!, ['--import', './hook.mjs', 'verify.mjs', registry.url, REPO, 'v1', root], { cwd: project, env });
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout.trim()).toBe(image.digest);
    const loaded = JSON.parse(/LOADED (.*)/.exec(r.stderr)![1]!) as string[];
    expect(loaded.some((u) => u.includes('/node_modules/tufoci/dist/client/index.js'))).toBe(true);
    // The client core verifies without the models (tuf-js's Updater, and with it @tufjs/models, only on request).
    expect(loaded.some((u) => u.includes('/node_modules/@sigstore/core/'))).toBe(true);
    expect(loaded.filter((u) => /\/node_modules\/(?:@tufjs\/models|minimatch|tuf-js\/dist\/updater)/.test(u))).toEqual([]);
    const service = loaded.filter((u) => SERVICE_ONLY.some((p) => u.includes(`/node_modules/${p}/`)) || u.includes('/tufoci/dist/service/'));
    expect(service).toEqual([]);
    const refused = await run(nodes[major]!, ['verify.mjs', registry.url, REPO, 'v9', root], { cwd: project, env });
    expect(refused.stdout.trim()).toBe('VerifyError NOT_IN_TUF');
  });

  it('TypeScript files type-check against the shipped declarations', async () => {
    const tsc = join(ROOT, 'node_modules', 'typescript', 'bin', 'tsc');
    const base = { module: 'nodenext', moduleResolution: 'nodenext', target: 'es2024', strict: true, noEmit: true, types: ['node'], typeRoots: [join(ROOT, 'node_modules', '@types')] };
    writeFileSync(
      join(project, 'client.ts'),
      `import { readFileSync } from 'node:fs';
import { RegistryStore, TrustStore, VerifyError, verifyImage, type VerifiedImage, type VerifyImageOptions } from 'tufoci';
const opts: VerifyImageOptions = { store: new RegistryStore({ url: 'http://127.0.0.1:5000' }), repository: 'a/b', tag: 'v1', trustedRoot: readFileSync('root.json') };
const image: Promise<VerifiedImage> = verifyImage(opts);
const digest: Promise<string> = image.then((i) => i.digest);
const code = (e: unknown): string | undefined => (e instanceof VerifyError ? e.code : undefined);
const trust = new TrustStore('/tmp/trust').optionsFor('a/b');
const pinned: Uint8Array = trust.trustedRoot;
// @ts-expect-error: a repository is a string
const wrong: VerifyImageOptions = { ...opts, repository: 1 };
void [digest, code, pinned, wrong];
`,
    );
    writeFileSync(join(project, 'tsconfig.client.json'), JSON.stringify({ compilerOptions: base, files: ['client.ts'] }));
    const client = await run(nodes['24']!, [tsc, '-p', 'tsconfig.client.json'], { cwd: project, env });
    expect(client.stdout + client.stderr).toBe('');
    expect(client.code).toBe(0);

    writeFileSync(
      join(project, 'service.ts'),
      `import { createApp, startServer, type RunningServer, type ServeOptions } from 'tufoci/service';
const opts: ServeOptions = { dataDir: './data', port: 0 };
const running: Promise<RunningServer> = startServer(opts);
type App = ReturnType<typeof createApp>;
const use = (app: App): App => app.use(async (_ctx, next) => next());
// @ts-expect-error: createApp returns a typed Koa application, not any
const none = (app: App): void => app.noSuchMethod();
void [running, use, none];
`,
    );
    writeFileSync(join(project, 'tsconfig.service.json'), JSON.stringify({ compilerOptions: { ...base, skipLibCheck: true }, files: ['service.ts'] }));
    const service = await run(nodes['24']!, [tsc, '-p', 'tsconfig.service.json'], { cwd: project, env });
    expect(service.stdout + service.stderr).toBe('');
    expect(service.code).toBe(0);
  });
});
