/**
 * `npm run demo`: the seed demo, end to end, on two real registries and the
 * tufoci service (see src/demo/seed-story.ts for the story). Installs
 * docker-registry and skopeo with apt-get when they are missing (as root on
 * Debian; otherwise prints the command), prints the story step by step, exits
 * 0 when every step verified and every attack was refused, 1 otherwise, and
 * stops what it started (registries by PID, the service, temp dirs) on
 * success, failure, Ctrl-C or SIGTERM.
 */
import { DOCKER_REGISTRY, SKOPEO, ensureSystemPackages } from '../../scripts/system-packages.ts';
import { DemoFailure, SeedDemo } from './seed-story.ts';

const packages = ensureSystemPackages([DOCKER_REGISTRY, SKOPEO], 'the demo');
if (!packages.ok) {
  console.error(packages.message);
  process.exit(2);
}

const demo = new SeedDemo();
process.once('exit', () => demo.killNow());
for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.once(signal, () => {
    console.error(`\n${signal}: stopping the registries and the service…`);
    void demo.cleanup().finally(() => process.exit(130));
  });
}

try {
  await demo.run();
  await demo.cleanup();
} catch (error) {
  await demo.cleanup();
  console.error(`\ndemo failed: ${error instanceof DemoFailure ? error.message : error instanceof Error ? (error.stack ?? error.message) : String(error)}`);
  process.exit(1);
}
