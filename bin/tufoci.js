#!/usr/bin/env node
// The `tufoci` command's entry point, in plain JavaScript so that Node's compile cache is on before
// the first module loads (TUFOCI_NO_COMPILE_CACHE=1 turns the cache off).
//
// An installed package ships dist/ (built JavaScript) and no src/: it runs dist/bin/tufoci.js, the
// command bundled by scripts/build.ts (a few chunks instead of ~150 modules to resolve). A
// checkout runs src/cli/main.ts, so an edit is never shadowed by a stale build; with every module
// in the compile cache, Node does not load its type stripper at all.
//
// Built-ins are taken with process.getBuiltinModule rather than `import`, whose ESM facade reads
// every export of a built-in (and so loads what the lazy ones stand for).
const [major = 0, minor = 0] = process.versions.node.split('.').map(Number);
if (major < 22 || (major === 22 && minor < 22)) {
  console.error(`tufoci needs Node.js 22.22 or later; this is ${process.version} (${process.execPath})`);
  process.exit(1);
}
const { existsSync } = process.getBuiltinModule('node:fs');
if (!process.env.TUFOCI_NO_COMPILE_CACHE) process.getBuiltinModule('node:module').enableCompileCache?.();
const source = new URL('../src/cli/main.ts', import.meta.url);
await import(existsSync(source) ? source.href : new URL('../dist/bin/tufoci.js', import.meta.url).href);
