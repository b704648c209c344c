export * from './tuf-key.ts';
export * from './signer.ts';
export * from './key-files.ts';
