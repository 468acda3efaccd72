#!/bin/sh
# Container entrypoint: `docker run IMAGE COMMAND ARGS...` runs `bninception COMMAND ARGS...`.
#
# With BNINCEPTION_BUILD_ENGINES=1 (the gpu image) it first builds, into the engine cache
# ($BNINCEPTION_ENGINE_CACHE, the /cache volume), only the TensorRT engines COMMAND will use, or
# reuses them by key:
#   serve        the engine of --precision (default fp32), unless --model, --no-engine or a
#                --providers list that does not start with tensorrt (without --engine) means
#                that serve runs an ONNX file, not an engine
#   triton-repo  the engine of --precision (default fp32)
#   validate, bench   every precision whose ONNX exists, unless --no-engines
#   anything else     none (pipeline builds its engines itself, as one of its stages)
# The run is the one COMMAND names: --run DIR, --run=DIR, --run-dir DIR or --run-dir=DIR
# (default runs/demo, which is /runs/demo from the image's working directory /).
# A failed engine build stops the container with its exit status; BNINCEPTION_BUILD_ENGINES=0
# starts without building. The cpu image sets BNINCEPTION_BUILD_ENGINES=0.
set -eu

BNINCEPTION_ENGINE_CACHE="${BNINCEPTION_ENGINE_CACHE:-/cache}"
export BNINCEPTION_ENGINE_CACHE

command=""
run_dir="runs/demo"
precision="fp32"
providers=""
model=""
engine_flag=""
no_engines=0
previous=""
for arg in "$@"; do
    case "$previous" in
        --run|--run-dir) run_dir="$arg" ;;
        --precision) precision="$arg" ;;
        --providers) providers="$arg" ;;
        --model) model="$arg" ;;
        *) ;;
    esac
    case "$arg" in
        --run=*) run_dir="${arg#--run=}" ;;
        --run-dir=*) run_dir="${arg#--run-dir=}" ;;
        --precision=*) precision="${arg#--precision=}" ;;
        --providers=*) providers="${arg#--providers=}" ;;
        --model=*) model="${arg#--model=}" ;;
        --engine) engine_flag=1 ;;
        --no-engine) engine_flag=0 ;;
        --no-engines) no_engines=1 ;;
        -*) ;;
        *)
            # the first word that is not an option (nor an option's value) is the command
            case "$previous" in
                --run|--run-dir|--precision|--providers|--model) ;;
                *) if [ -z "$command" ]; then command="$arg"; fi ;;
            esac
            ;;
    esac
    previous="$arg"
done

# Which precisions COMMAND will run as TensorRT engines (empty: none).
engines=""
case "$command" in
    serve)
        # as `serve` decides: --engine, or no --providers, or tensorrt first serves the engine
        first_provider="$(printf '%s' "${providers%%,*}" | tr '[:upper:]' '[:lower:]' | tr -d ' ')"
        uses_engine="$engine_flag"
        if [ -z "$uses_engine" ]; then
            case "$first_provider" in
                ""|tensorrt|tensorrtexecutionprovider) uses_engine=1 ;;
                *) uses_engine=0 ;;
            esac
        fi
        if [ -z "$model" ] && [ "$uses_engine" = 1 ]; then engines="$precision"; fi
        ;;
    triton-repo) engines="$precision" ;;
    validate|bench) if [ "$no_engines" = 0 ]; then engines="all"; fi ;;
    *) ;;
esac

if [ "${BNINCEPTION_BUILD_ENGINES:-0}" = "1" ] && [ -n "$engines" ] && [ -d "$run_dir" ]; then
    echo "entrypoint: TensorRT engines for $command: --run $run_dir --precision $engines" >&2
    status=0
    bninception build-engine --run "$run_dir" --precision "$engines" --if-available || status=$?
    if [ "$status" != 0 ]; then
        echo "entrypoint: building the TensorRT engines failed (exit $status); set BNINCEPTION_BUILD_ENGINES=0 to start without them" >&2
        exit "$status"
    fi
fi

exec bninception "$@"
