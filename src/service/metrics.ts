/** Prometheus metrics of one service instance (prom-client), on its own registry. */
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';

export interface Metrics {
  registry: Registry;
  requests: Counter<'method' | 'route' | 'status'>;
  latency: Histogram<'method' | 'route'>;
  uploads: Counter<'kind' | 'outcome'>;
}

export function createMetrics(expiries: () => Array<{ repository: string; role: string; seconds: number }>): Metrics {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry, prefix: 'tufoci_process_' });
  const requests = new Counter({ name: 'tufoci_http_requests_total', help: 'HTTP requests by route and status', labelNames: ['method', 'route', 'status'], registers: [registry] });
  const latency = new Histogram({
    name: 'tufoci_http_request_duration_seconds',
    help: 'HTTP request latency',
    labelNames: ['method', 'route'],
    buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5],
    registers: [registry],
  });
  const uploads = new Counter({ name: 'tufoci_uploads_total', help: 'Metadata uploads by kind and outcome (error code or "ok")', labelNames: ['kind', 'outcome'], registers: [registry] });
  new Gauge({
    name: 'tufoci_role_expiry_seconds',
    help: 'Seconds until a role expires (negative: expired), for repositories this instance holds',
    labelNames: ['repository', 'role'],
    registers: [registry],
    collect() {
      this.reset();
      for (const e of expiries()) this.set({ repository: e.repository, role: e.role }, e.seconds);
    },
  });
  return { registry, requests, latency, uploads };
}
