#!/bin/sh
# The bench's own set-up (not the tests'): Anthropic's sandbox-runtime (`srt`)
# and what it needs on Linux (bubblewrap, socat), for the warm-pool figures,
# which compare `coi run` with `srt true` measured in the same run.
# Packages come through the host's apt and npm configuration only.
set -eu
cd "$(dirname "$0")"
if ! command -v bwrap >/dev/null || ! command -v socat >/dev/null; then
  DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends bubblewrap socat
fi
if [ ! -x .tools/node_modules/.bin/srt ]; then
  npm install --no-audit --no-fund --prefix .tools @anthropic-ai/sandbox-runtime
fi
.tools/node_modules/.bin/srt --version
