/**
 * A loopback HTTP proxy in front of a registry, so a test can stop one
 * service instance at an exact point of its write sequence: `holdNext(match)`
 * lets the next matching request reach the registry (it takes effect there)
 * and holds its response back until `release()`. Killing the instance while
 * its response is held is a crash right after that write; restarting Redis
 * while it is held makes the instance lose its lock between two writes.
 *
 * Everything else is forwarded unchanged (test/support/http-proxy.ts).
 */
import { startHttpProxy } from '../support/http-proxy.ts';

export interface TappedRequest {
  method: string;
  path: string;
}

export interface Hold {
  /** Resolves once a matching request was answered by the registry (its effect is there); the response is still held. */
  readonly reached: Promise<TappedRequest & { status: number }>;
  /** Send the held response on (a no-op if the client is gone). */
  release(): void;
}

export interface RegistryTap {
  readonly url: string;
  /** Every request seen, in order (method and path). */
  readonly requests: TappedRequest[];
  holdNext(match: (r: TappedRequest) => boolean): Hold;
  close(): Promise<void>;
}

interface Armed {
  match: (r: TappedRequest) => boolean;
  reached: (r: TappedRequest & { status: number }) => void;
  released: Promise<void>;
}

export async function startRegistryTap(registryUrl: string): Promise<RegistryTap> {
  const armed: Armed[] = [];
  const releases: Array<() => void> = [];
  const requests: TappedRequest[] = [];
  const http = await startHttpProxy(registryUrl, {
    onRequest: (seen) => requests.push(seen),
    intercept: async (seen, response) => {
      const index = armed.findIndex((a) => a.match(seen));
      const hold = index >= 0 ? armed.splice(index, 1)[0] : undefined;
      if (hold) {
        hold.reached({ ...seen, status: response.status });
        await hold.released;
      }
      return response;
    },
  });
  const self = http.url;

  return {
    url: self,
    requests,
    holdNext(match) {
      let release!: () => void;
      const released = new Promise<void>((resolve) => {
        release = resolve;
      });
      releases.push(release);
      let reached!: (r: TappedRequest & { status: number }) => void;
      const reachedP = new Promise<TappedRequest & { status: number }>((resolve) => {
        reached = resolve;
      });
      armed.push({ match, reached, released });
      return { reached: reachedP, release };
    },
    async close() {
      for (const r of releases) r();
      armed.length = 0;
      await http.close();
    },
  };
}
