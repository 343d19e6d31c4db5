#!/usr/bin/env bash
# Make the local base image `tiergate-base:bookworm` from Debian's packages (mmdebstrap, ~20 s).
#
# Why: on a machine that cannot pull from an image registry, this is the only way to get a
# Python 3.11 root filesystem into Docker. The images' Dockerfiles take it as their BASE_IMAGE
# build argument; on a cluster build they default to the public images instead.
# The host's CA bundle goes inside, because pip in a build reaches the package index only with it.
#
# Usage: scripts/make-base-image.sh [IMAGE]   (needs root, mmdebstrap and a running Docker engine)
set -euo pipefail

image="${1:-tiergate-base:bookworm}"
suite="${DEBIAN_SUITE:-bookworm}"
cd "$(dirname "$0")/.."
out=build/images
mkdir -p "$out"

if ! docker info >/dev/null 2>&1; then
  echo "error: no Docker engine answers on ${DOCKER_HOST:-/var/run/docker.sock}; start one (as root): dockerd --iptables=false --bridge=none &" >&2
  exit 2
fi
if ! command -v mmdebstrap >/dev/null 2>&1; then
  echo "error: mmdebstrap is not installed (apt-get install -y mmdebstrap)" >&2
  exit 2
fi

started=$(date +%s)
# python3-venv: the images build their own venv. git: promotion runs git. libpython3.11: the
# Triton python-backend stub links it. ca-certificates + the host bundle: pip reaches the index.
mmdebstrap --quiet --variant=minbase \
  --include=python3,python3-venv,libpython3.11,ca-certificates,git \
  --customize-hook='copy-in /etc/ssl/certs/ca-certificates.crt /etc/ssl/certs/' \
  "$suite" "$out/base.tar"
docker import \
  --change 'ENV SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt PIP_CERT=/etc/ssl/certs/ca-certificates.crt' \
  --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin LANG=C.UTF-8' \
  --change 'CMD ["/bin/bash"]' \
  "$out/base.tar" "$image" >/dev/null
rm -f "$out/base.tar"
echo "base image $image built in $(( $(date +%s) - started )) s ($(docker image inspect -f '{{.Size}}' "$image" | numfmt --to=iec))"
