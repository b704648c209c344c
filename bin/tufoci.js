#!/usr/bin/env node
// The `tufoci` command's entry point, in plain JavaScript so that Node's compile cache is on before
// the first TypeScript module loads: with every module in the cache, Node never loads its type
// stripper at all (TUFOCI_NO_COMPILE_CACHE=1 turns the cache off).
import { enableCompileCache } from 'node:module';

if (!process.env.TUFOCI_NO_COMPILE_CACHE) enableCompileCache?.();
await import('../src/cli/main.ts');
