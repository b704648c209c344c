/**
 * `npm run build` (and `npm pack`, through prepack): src/ to dist/ as JavaScript plus `.d.ts`,
 * with TypeScript's own compiler (tsconfig.build.json). tsc rewrites the `.ts` import
 * specifiers of the JavaScript it emits (rewriteRelativeImportExtensions); its declaration
 * files keep them, so they are rewritten here to `.js`, which every TypeScript resolution
 * mode a consumer may use understands. The demo (src/demo) is not part of the package.
 *
 * Then the command: dist/cli/main.js and everything it loads is bundled by rolldown into
 * dist/bin/ (one chunk per lazily loaded command group), with the client's libraries (tuf-js,
 * @tufjs/*, @sigstore/core, canonicalize) inside and the service's (koa, @koa/router, ioredis,
 * pino, prom-client) and the native pkcs11js left as imports. A command then loads a handful of
 * files instead of a hundred and fifty modules resolved one by one, which is most of its start-up
 * (docs/ARCHITECTURE.md, "Runtime and toolchain"). dist/bin/ sits two levels below the package
 * root, as src/cli/ does, so the `import.meta.url`-relative paths (roles/, package.json) hold.
 */
import { spawnSync } from 'node:child_process';
import { rolldown } from 'rolldown';
import { readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('..', import.meta.url));
const dist = join(root, 'dist');
rmSync(dist, { recursive: true, force: true });
const tsc = spawnSync(process.execPath, [join(root, 'node_modules/typescript/bin/tsc'), '-p', join(root, 'tsconfig.build.json')], { stdio: 'inherit' });
if (tsc.status !== 0) {
  console.error('build: tsc failed');
  process.exit(1);
}

const RELATIVE_TS = /(\bfrom\s+|\bimport\s*\(\s*|\bimport\s+)(['"])(\.{1,2}\/[^'"]*?)\.ts\2/g;
let files = 0;
for (const entry of readdirSync(dist, { recursive: true, withFileTypes: true })) {
  if (!entry.isFile() || !entry.name.endsWith('.d.ts')) continue;
  const path = join(entry.parentPath, entry.name);
  const text = readFileSync(path, 'utf8');
  const rewritten = text.replace(RELATIVE_TS, (_m, lead: string, q: string, spec: string) => `${lead}${q}${spec}.js${q}`);
  if (rewritten !== text) writeFileSync(path, rewritten);
  files += 1;
}
const left = readdirSync(dist, { recursive: true, withFileTypes: true })
  .filter((e) => e.isFile() && /\.(js|d\.ts)$/.test(e.name))
  .filter((e) => /(from\s+|import\s*\(\s*)['"]\.{1,2}\/[^'"]*\.ts['"]/.test(readFileSync(join(e.parentPath, e.name), 'utf8')));
if (left.length) {
  console.error(`build: relative .ts specifiers left in ${left.map((e) => e.name).join(', ')}`);
  process.exit(1);
}

const EXTERNAL = ['koa', '@koa/router', 'ioredis', 'pino', 'prom-client', 'pkcs11js', 'minimatch'];

/**
 * Node's built-in modules by `process.getBuiltinModule`, not `import`: the ESM facade of a
 * built-in reads every one of its exports, and the lazy ones load much of Node's library (node:util's
 * diff loads assert's, node:crypto's loads webcrypto and argon2, node:fs's loads fs/promises and
 * readline, node:http's loads undici): 20–30 ms of a command's start-up. Reading the named
 * properties only touches those. Built-ins have no live bindings to lose.
 */
const BUILTIN_IMPORT = /^import\s+(?:([\w$]+)\s*,\s*)?(?:\{([^}]*)\}|\*\s+as\s+([\w$]+)|([\w$]+))\s+from\s+"(node:[a-z_/]+)";$/gm;
function builtinsByGetter(code: string): string {
  return code.replace(BUILTIN_IMPORT, (_m, defaultName: string | undefined, named: string | undefined, ns: string | undefined, single: string | undefined, id: string) => {
    const get = `process.getBuiltinModule(${JSON.stringify(id)})`;
    const out: string[] = [];
    const whole = defaultName ?? ns ?? single;
    if (whole) out.push(`const ${whole} = ${get};`);
    if (named !== undefined) {
      const names = named.split(',').map((n) => n.trim()).filter(Boolean).map((n) => n.replace(/^([\w$]+)\s+as\s+([\w$]+)$/, '$1: $2'));
      out.push(`const { ${names.join(', ')} } = ${whole ?? get};`);
    }
    return out.join(' ');
  });
}
const bundle = await rolldown({
  input: { tufoci: join(dist, 'cli', 'main.js') },
  platform: 'node',
  external: (id) => EXTERNAL.some((name) => id === name || id.startsWith(`${name}/`)),
  logLevel: 'warn',
  plugins: [{ name: 'builtins-by-getter', renderChunk: (code: string) => ({ code: builtinsByGetter(code) }) }],
});
const written = await bundle.write({ dir: join(dist, 'bin'), format: 'esm', entryFileNames: '[name].js', chunkFileNames: '[name]-[hash].js' });
await bundle.close();
const leftImports = readdirSync(join(dist, 'bin')).filter((f) => /^import\s[^;]*from\s+"node:/m.test(readFileSync(join(dist, 'bin', f), 'utf8')));
if (leftImports.length) {
  console.error(`build: built-in imports left in ${leftImports.join(', ')}`);
  process.exit(1);
}
console.error(`build: dist/ written (${files} declaration files; the command in ${written.output.length} chunks under dist/bin/)`);
