/** A free TCP port on 127.0.0.1: the one helper the demo and the tests share. */
export { freeLoopbackPort } from '../../src/demo/registry-process.ts';
