# The smelter-fleet image: one CLI (`smelter-fleet`) for the controller, the allocators, the gateway and the fleet
# pods' sidecar (deploy/helm/smelter-fleet). Build from the repository root:
#   docker build -t ghcr.io/smelter-fleet/smelter-fleet:0.1.0 .
# (Not built in this repository's CI: the development machines have no Docker engine.)
ARG NODE_IMAGE=node:20-bookworm-slim

FROM ${NODE_IMAGE} AS build
WORKDIR /src
# pnpm as pinned by package.json's packageManager.
RUN corepack enable
COPY package.json pnpm-lock.yaml pnpm-workspace.yaml .npmrc tsconfig.base.json tsconfig.json ./
COPY proto proto
COPY scripts scripts
COPY packages packages
COPY e2e/package.json e2e/package.json
RUN pnpm install --frozen-lockfile
RUN pnpm build
# A self-contained copy of the CLI with its production dependencies only (workspace packages as built dist/).
RUN pnpm --filter @smelter-fleet/cli deploy --prod /opt/smelter-fleet

FROM ${NODE_IMAGE}
LABEL org.opencontainers.image.title="smelter-fleet" \
      org.opencontainers.image.description="Fleets of Smelter live-compositing servers: controller, allocator, gateway, sidecar"
COPY --from=build /opt/smelter-fleet /opt/smelter-fleet
RUN ln -s /opt/smelter-fleet/dist/bin.js /usr/local/bin/smelter-fleet && chmod +x /opt/smelter-fleet/dist/bin.js
ENV NODE_ENV=production
# The chart runs it as this user with a read-only root filesystem.
USER 1000:1000
# gRPC allocator, gateway HTTP, controller metrics.
EXPOSE 50051 8080 9090
ENTRYPOINT ["smelter-fleet"]
CMD ["help"]
