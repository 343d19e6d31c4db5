#!/usr/bin/env bash
# Build tiergate's images: cpu (pipeline steps, regression Job), gpu (training, export), triton (serving).
#
#   scripts/build-images.sh [--public] [--registry REG] [--tag TAG] [--push] [--gpu-torch cpu] [cpu] [gpu] [triton]
#
# Default (what `make images` runs): this machine, no registry — the bases are the local
# tiergate-base:bookworm (made by scripts/make-base-image.sh if missing), the CPU image takes
# torch's CPU wheel from $PIP_FIND_LINKS, tags are tiergate-{cpu,gpu,triton}:local.
# --public: the bases a cluster user pulls (python:3.11-slim-bookworm, NVIDIA's Triton image),
# torch from the PyTorch CPU index; tags REG/tiergate-{cpu,gpu,triton}:TAG; --push pushes them.
# --gpu-torch cpu: the GPU Dockerfile with torch's CPU wheel (CI: everything but CUDA, no
# multi-GB download; never push such an image).
# Prints each image's build time and size, and writes them to build/images/report.txt.
set -euo pipefail
cd "$(dirname "$0")/.."

public=0 push=0 registry="" tag="local" gpu_torch=cuda targets=()
while [ $# -gt 0 ]; do
  case "$1" in
    --public) public=1 ;;
    --push) push=1 ;;
    --registry) registry="${2:?--registry needs a value}"; shift ;;
    --tag) tag="${2:?--tag needs a value}"; shift ;;
    --gpu-torch) gpu_torch="${2:?--gpu-torch needs cpu or cuda}"; shift ;;
    cpu|gpu|triton) targets+=("$1") ;;
    *) echo "error: unknown argument $1 (see the header of $0)" >&2; exit 2 ;;
  esac
  shift
done
[ ${#targets[@]} -gt 0 ] || targets=(cpu gpu triton)
if [ "$gpu_torch" = cpu ] && { [ "$public" = 1 ] || [ "$push" = 1 ]; }; then
  echo "error: --gpu-torch cpu is for local test images only (not with --public or --push)" >&2; exit 2
fi
if [ "$push" = 1 ] && [ -z "$registry" ]; then
  echo "error: --push needs --registry (e.g. --registry ghcr.io/you)" >&2; exit 2
fi
if ! docker info >/dev/null 2>&1; then
  echo "error: no Docker engine answers on ${DOCKER_HOST:-/var/run/docker.sock}; start one (as root): dockerd --iptables=false --bridge=none &" >&2
  exit 2
fi

python="${PYTHON:-.venv/bin/python}"
context=build/images/context
local_base="${LOCAL_BASE_IMAGE:-tiergate-base:bookworm}"
args_cpu=() args_gpu=() args_triton=()
torch_wheel=()
if [ "$public" = 0 ]; then
  docker image inspect "$local_base" >/dev/null 2>&1 || scripts/make-base-image.sh "$local_base"
  wheel=$(ls "${PIP_FIND_LINKS:-/opt/wheels}"/torch-2.13.0+cpu-*.whl 2>/dev/null | head -n1 || true)
  if [ -z "$wheel" ]; then
    echo "error: no torch 2.13.0 CPU wheel in \$PIP_FIND_LINKS (${PIP_FIND_LINKS:-/opt/wheels}); build with --public to use the PyTorch index" >&2
    exit 2
  fi
  torch_wheel=(--torch-wheel "$wheel")
  args_cpu=(--build-arg "BASE_IMAGE=$local_base" --build-arg TORCH_INDEX_URL=)
  args_gpu=(--build-arg "BASE_IMAGE=$local_base" --build-arg BASE_MODELS= --build-arg "TORCH_FLAVOUR=$gpu_torch")
  args_triton=(--build-arg "BASE_IMAGE=$local_base")
fi
"$python" scripts/image_context.py "$context" "${torch_wheel[@]}"

prefix="${registry:+$registry/}"
report=build/images/report.txt
: > "$report"
for target in "${targets[@]}"; do
  case "$target" in
    cpu) dockerfile=components/images/Dockerfile.cpu; extra=("${args_cpu[@]}") ;;
    gpu) dockerfile=components/images/Dockerfile.gpu; extra=("${args_gpu[@]}") ;;
    triton) dockerfile=serving/images/Dockerfile.triton; extra=("${args_triton[@]}") ;;
  esac
  image="${prefix}tiergate-${target}:${tag}"
  started=$(date +%s)
  echo "building $image ($dockerfile)"
  docker build --network host -f "$dockerfile" -t "$image" "${extra[@]}" \
    --label "org.tiergate.source-digest=$(cat "$context/source-digest")" "$context" \
    > "build/images/$target.log" 2>&1 || { tail -n 40 "build/images/$target.log" >&2; echo "error: building $image failed (log: build/images/$target.log)" >&2; exit 1; }
  size=$(docker image inspect -f '{{.Size}}' "$image" | numfmt --to=iec --suffix=B)
  line="$image: built in $(( $(date +%s) - started )) s, $size"
  echo "$line" | tee -a "$report"
  if [ "$push" = 1 ]; then docker push "$image"; fi
done
