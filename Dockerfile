# tufoci metadata service.
#
#   docker build -t tufoci .
#   docker run --rm -p 8080:8080 -v tufoci-data:/var/lib/tufoci tufoci
#
# The image runs the built package, as `npm i tufoci` gives it: the build stage
# compiles src/ to dist/ (npm run build) and packs it (npm pack: dist/, bin/, roles/,
# README.md); the runtime stage unpacks that tarball over the production
# dependencies of the lock file. The base image provides Node 24, which is why the
# `node` devDependency (a Node binary for machines whose system Node is older) is
# not run: --ignore-scripts. The one native addon, pkcs11js (PKCS#11 keys: HSM-held
# online keys, docs/OPERATIONS.md), is then built on its own in the deps stage, against
# the base image's Node headers (/usr/local/include/node), with a compiler that stays
# in that stage: the runtime image carries the built addon and no toolchain.
#
# Default command: the embedded default (OCI layout, keys and an admin token under
# /var/lib/tufoci). docker-compose.yml overrides it to use a registry and Redis.

FROM node:24-slim AS build
WORKDIR /build
COPY package.json package-lock.json tsconfig.json tsconfig.build.json README.md ./
RUN npm ci --ignore-scripts --no-audit --no-fund
COPY bin ./bin
COPY roles ./roles
COPY scripts/build.ts ./scripts/build.ts
COPY src ./src
RUN node scripts/build.ts \
 && mkdir -p /build/pkg \
 && npm pack --ignore-scripts --pack-destination /build/pkg \
 && mv /build/pkg/tufoci-*.tgz /build/pkg/tufoci.tgz

FROM node:24-slim AS deps
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 make g++ \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --ignore-scripts --no-audit --no-fund \
 && npm_config_nodedir=/usr/local npm rebuild pkcs11js \
 && node -e "require('pkcs11js')" \
 && npm cache clean --force

FROM node:24-slim
ENV NODE_ENV=production \
    TUFOCI_LOG_LEVEL=info
WORKDIR /app
COPY --from=deps /app/node_modules ./node_modules
COPY --from=build /build/pkg/tufoci.tgz /tmp/tufoci.tgz
RUN tar -xzf /tmp/tufoci.tgz --strip-components=1 -C /app && rm /tmp/tufoci.tgz
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
CMD ["node", "--initial-old-space-size=256", "bin/tufoci.js", "serve", "--listen", "0.0.0.0:8080", "--data", "/var/lib/tufoci"]
