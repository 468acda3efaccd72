#!/bin/sh
# Container entrypoint: before `serve`, `validate`, `bench` or `triton-repo`, build the run's
# TensorRT engines (or reuse them by key from the /cache volume), then hand over to the CLI.
# `pipeline` builds its engines itself as one of its stages, with the same cache.
# Set BNINCEPTION_SKIP_ENGINES=1 to start without building.
set -eu

BNINCEPTION_ENGINE_CACHE="${BNINCEPTION_ENGINE_CACHE:-/cache}"
export BNINCEPTION_ENGINE_CACHE

run_dir="runs/demo"
previous=""
for arg in "$@"; do
    if [ "$previous" = "--run" ]; then
        run_dir="$arg"
    fi
    case "$arg" in
        --run=*) run_dir="${arg#--run=}" ;;
        *) ;;
    esac
    previous="$arg"
done

case "${1:-}" in
    serve|validate|bench|triton-repo)
        if [ "${BNINCEPTION_SKIP_ENGINES:-0}" != "1" ] && [ -d "$run_dir" ]; then
            bninception build-engine --run "$run_dir" --precision all --if-available \
                || echo "entrypoint: building TensorRT engines failed; continuing without them" >&2
        fi
        ;;
    *) ;;
esac

exec bninception "$@"
