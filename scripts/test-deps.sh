#!/usr/bin/env bash
# System packages the test suite needs beyond the Python environment: headless Chromium renders
# the transparency page in a test (Art. 14); nginx fronts the cluster test's replicas. Installed once; a no-op when already present.
set -euo pipefail
if ! command -v chromium >/dev/null 2>&1; then
    if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
        echo "installing chromium for the browser test (once)..."
        apt-get update -qq >/dev/null
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
    else
        echo "chromium is missing and cannot be installed here (needs root and apt-get)" >&2
        exit 1
    fi
fi
# chromedriver (Debian's chromium-driver, same version as chromium) lets Selenium drive that chromium
# through the console and privacy center pages (tests/web/); nothing downloads a browser. A CJK font
# makes the bilingual pages' screenshots legible.
if ! command -v chromedriver >/dev/null 2>&1; then
    if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
        echo "installing chromium-driver for the page tests (once)..."
        apt-get update -qq >/dev/null
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium-driver fonts-wqy-microhei >/dev/null
    else
        echo "chromedriver is missing and cannot be installed here (needs root and apt-get)" >&2
        exit 1
    fi
fi
# nginx balances the replicas of the cluster test (tests/e2e/test_cluster.py, `recsys cluster up`).
bash "$(dirname "$0")/nginx.sh" install
# wrk drives the latency benchmark's real-path section, which the benchmark smoke test runs.
bash "$(dirname "$0")/bench-deps.sh"
