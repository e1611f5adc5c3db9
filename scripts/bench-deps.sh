#!/usr/bin/env bash
# System packages the benchmarks need beyond the Python environment: wrk, the C HTTP load generator
# of the latency benchmark's real-path section (`recsys bench latency --real-path-only`). A C client
# leaves the cores to the server it measures; the Python load generator would take one of the two.
# Installed once with apt-get (Debian package `wrk`); a no-op when already present.
set -euo pipefail
if command -v wrk >/dev/null 2>&1; then
    exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
    echo "wrk is missing and cannot be installed here (no apt-get): install wrk (Debian/Ubuntu package: wrk) and rerun" >&2
    exit 1
fi
SUDO=""
if [ "$(id -u)" != "0" ]; then
    if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
        SUDO="sudo -n"
    else
        echo "wrk is missing and cannot be installed here (needs root or passwordless sudo for apt-get install wrk)" >&2
        exit 1
    fi
fi
echo "installing wrk for the latency benchmark's real-path section (once)..."
if ! DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq wrk >/dev/null 2>&1; then
    $SUDO apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq wrk >/dev/null
fi
command -v wrk >/dev/null 2>&1 || { echo "apt-get installed wrk but it is not on PATH" >&2; exit 1; }
echo "wrk installed: $(command -v wrk)"
