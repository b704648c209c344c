# tufoci metadata service.
#
#   docker build -t tufoci .
#   docker run --rm -p 8080:8080 -v tufoci-data:/var/lib/tufoci tufoci
#
# No build step: Node 24 strips the TypeScript types of src/ at load time, so the
# image runs the sources as they are. The base image provides Node 24, which is
# why the `node` devDependency (a Node binary for machines whose system Node is
# older) is not installed; nothing under src/ imports a devDependency, so the
# runtime needs only `dependencies`. The only install script in the lock file is
# that devDependency's, hence --ignore-scripts.
#
# Default command: the embedded default (OCI layout, keys and an admin token under
# /var/lib/tufoci). docker-compose.yml overrides it to use a registry and Redis.

FROM node:24-slim AS deps
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --ignore-scripts --no-audit --no-fund \
 && npm cache clean --force

FROM node:24-slim
ENV NODE_ENV=production \
    TUFOCI_LOG_LEVEL=info
WORKDIR /app
COPY --from=deps /app/node_modules ./node_modules
COPY package.json package-lock.json ./
COPY roles ./roles
COPY src ./src
# The data directory (online keys, admin token, OCI layout) belongs to the unprivileged
# `node` user of the base image; a named volume mounted here inherits that ownership.
RUN mkdir -p /var/lib/tufoci && chown node:node /var/lib/tufoci && chmod 0700 /var/lib/tufoci
USER node
VOLUME ["/var/lib/tufoci"]
EXPOSE 8080
# node:24-slim has no curl or wget; Node's fetch does the readiness probe.
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s --retries=3 \
  CMD ["node", "-e", "fetch('http://127.0.0.1:8080/readyz').then((r) => process.exit(r.ok ? 0 : 1), () => process.exit(1))"]
# `tufoci serve` stops on SIGTERM after finishing in-flight writes (docker stop sends SIGTERM).
STOPSIGNAL SIGTERM
CMD ["node", "--initial-old-space-size=256", "src/cli/main.ts", "serve", "--listen", "0.0.0.0:8080", "--data", "/var/lib/tufoci"]
