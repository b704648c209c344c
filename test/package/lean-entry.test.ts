/**
 * The client entry (`tufoci`, src/client/index.ts) loads none of the service: its import graph,
 * static and dynamic imports alike (type-only imports are erased and do not count), holds none of
 * koa, @koa/router, ioredis, pino or prom-client. The service entry does hold them, which shows
 * the walk finds what it looks for. test/package/install.test.ts checks the same at run time,
 * on the installed package.
 */
import { readFileSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const SERVICE_ONLY = ['koa', '@koa/router', 'ioredis', 'pino', 'prom-client'];
const root = fileURLToPath(new URL('../..', import.meta.url));

/** Every relative module reachable from `entry`, and the packages it names (with one path that reaches each). */
function importGraph(entry: string, { dynamic = true }: { dynamic?: boolean } = {}): { files: Set<string>; packages: Map<string, string[]> } {
  const files = new Set<string>();
  const packages = new Map<string, string[]>();
  const via = new Map<string, string | undefined>();
  const chain = (file: string): string[] => {
    const out: string[] = [];
    for (let f: string | undefined = file; f; f = via.get(f)) out.push(f.slice(root.length));
    return out;
  };
  const queue = [resolve(entry)];
  via.set(queue[0]!, undefined);
  while (queue.length) {
    const file = queue.shift()!;
    files.add(file);
    // Drop comments, then every import/export form that is erased at run time.
    const text = readFileSync(file, 'utf8')
      .replace(/\/\*[\s\S]*?\*\//g, '')
      .replace(/^\s*\/\/.*$/gm, '')
      .replace(/\b(?:import|export)\s+type\s+[^;]*?from\s+['"][^'"]+['"]/g, '');
    const specifiers = [
      ...text.matchAll(/\b(?:import|export)\s[^'";]*?\bfrom\s+['"]([^'"]+)['"]/g),
      ...(dynamic ? text.matchAll(/\bimport\s*\(\s*['"]([^'"]+)['"]\s*\)/g) : []),
      ...text.matchAll(/^\s*import\s+['"]([^'"]+)['"]/gm),
    ].map((m) => m[1]!);
    for (const spec of specifiers) {
      if (spec.startsWith('.')) {
        const next = resolve(dirname(file), spec);
        if (!via.has(next)) {
          via.set(next, file);
          queue.push(next);
        }
      } else if (!spec.startsWith('node:')) {
        const name = spec.startsWith('@') ? spec.split('/').slice(0, 2).join('/') : spec.split('/')[0]!;
        if (!packages.has(name)) packages.set(name, chain(file));
        if (!packages.has(spec)) packages.set(spec, chain(file));
      }
    }
  }
  return { files, packages };
}

describe('the client entry is lean', () => {
  it('src/client/index.ts reaches none of the service packages, statically or by a dynamic import', () => {
    const { files, packages } = importGraph(`${root}src/client/index.ts`);
    expect(files.size).toBeGreaterThan(20);
    const found = SERVICE_ONLY.filter((p) => packages.has(p)).map((p) => `${p} via ${packages.get(p)!.join(' <- ')}`);
    expect(found).toEqual([]);
    // What it does load: the signature library, and tuf-js (its Updater by a dynamic import, as the reference client).
    expect([...packages.keys()]).toEqual(expect.arrayContaining(['@sigstore/core', 'tuf-js']));
    for (const f of files) expect(f.startsWith(`${root}src/service/`) || f.startsWith(`${root}src/coord/`), f).toBe(false);
  });

  it('`tufoci verify` starts without @tufjs/models or minimatch: what it loads before it runs (static imports) holds neither, and of tuf-js only its error classes', () => {
    const { files, packages } = importGraph(`${root}src/cli/commands/client.ts`, { dynamic: false });
    expect(files.size).toBeGreaterThan(20);
    expect(files).toContain(`${root}src/client/core/trusted-set.ts`);
    expect(['@tufjs/models', 'minimatch', ...SERVICE_ONLY].filter((p) => packages.has(p)).map((p) => `${p} via ${packages.get(p)!.join(' <- ')}`)).toEqual([]);
    expect([...packages.keys()].filter((p) => p.startsWith('tuf-js'))).toEqual(['tuf-js', 'tuf-js/dist/error.js']);
    // The tuf-js Updater (`--tuf-client tuf-js`) is one dynamic import away, and brings the models with it.
    expect(importGraph(`${root}src/cli/commands/client.ts`).packages.has('tuf-js')).toBe(true);
  });

  it('the registry fetcher reads metadata only through MetadataStore (no artifact parsing of its own), and no client module imports the service', () => {
    const fetcher = readFileSync(`${root}src/client/registry-fetcher.ts`, 'utf8');
    const storage = [...fetcher.matchAll(/from '\.\.\/storage\/([^']+)'/g)].map((m) => m[1]);
    expect(storage.filter((m) => ['artifact.ts', 'store.ts', 'digest.ts', 'index.ts'].includes(m!))).toEqual([]);
    expect(storage).toContain('metadata-store.ts');
    for (const f of importGraph(`${root}src/client/index.ts`).files) {
      if (!f.startsWith(`${root}src/client/`)) continue;
      expect(readFileSync(f, 'utf8'), f).not.toMatch(/from '(?:\.\.\/)+service\//);
    }
  });

  it('the walk finds the service packages from src/service/index.ts', () => {
    const { packages } = importGraph(`${root}src/service/index.ts`);
    expect(SERVICE_ONLY.filter((p) => !packages.has(p))).toEqual([]);
  });
});
