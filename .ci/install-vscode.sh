#!/usr/bin/env bash
# Installs what the end-to-end tests need to run the extension in a real VS Code
# (see test/e2e/harness.ts):
#   - Debian packages: chromium (the browser playwright-core drives), libkrb5-dev
#     (headers for code-server's native 'kerberos' module), ripgrep (see below);
#   - code-server 4.100.3 (VS Code 1.100.3, the newest release for Node 20) from
#     npm, into a cache folder outside the repository.
# Idempotent: each step checks first and says whether it did anything. Run as root.
# A complete code-server install is marked by a stamp file written last, so an
# interrupted install is redone, never half-used.
#
#   COI_CODE_SERVER_DIR   where code-server goes (default /var/cache/coi/code-server)
set -euo pipefail

CS_VERSION=4.100.3
# The @vscode/ripgrep that code-server 4.100.3 depends on, and the rg release it wants.
RG_PKG_VERSION=1.15.11
RG_TARBALL=ripgrep-v13.0.0-10-x86_64-unknown-linux-musl.tar.gz
CS_DIR=${COI_CODE_SERVER_DIR:-/var/cache/coi/code-server}
STAMP="$CS_DIR/.installed-$CS_VERSION"

say() { printf 'install-vscode: %s\n' "$*"; }
t0=$SECONDS

# ── Debian packages ────────────────────────────────────────────────────────────
missing=()
for p in chromium libkrb5-dev ripgrep; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if ((${#missing[@]})); then
  say "apt: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  say "apt: installed ${missing[*]} ($((SECONDS - t0)) s)"
else
  say "apt: chromium, libkrb5-dev and ripgrep already installed"
fi
for tool in /usr/bin/chromium /usr/bin/rg; do
  [[ -x $tool ]] || { say "ERROR: $tool missing after apt"; exit 1; }
done

# ── code-server ────────────────────────────────────────────────────────────────
if [[ -f $STAMP ]] && [[ -f $CS_DIR/node_modules/code-server/out/node/entry.js ]]; then
  say "code-server $CS_VERSION already in $CS_DIR"
else
  t1=$SECONDS
  say "code-server $CS_VERSION: installing into $CS_DIR (compiles native modules, ~2 min on 2 cores)"
  mkdir -p "$(dirname "$CS_DIR")"
  work=$(mktemp -d "$(dirname "$CS_DIR")/.code-server-install.XXXXXX")
  trap 'rm -rf "$work"' EXIT
  # @vscode/ripgrep's postinstall downloads rg from a host we cannot reach; it first
  # looks for the tarball in $TMPDIR/vscode-ripgrep-cache-<version>/, so hand it
  # Debian's rg there (a private TMPDIR keeps /tmp clean).
  mkdir -p "$work/tmp/rgpack" "$work/tmp/vscode-ripgrep-cache-$RG_PKG_VERSION"
  cp /usr/bin/rg "$work/tmp/rgpack/rg"
  tar czf "$work/tmp/vscode-ripgrep-cache-$RG_PKG_VERSION/$RG_TARBALL" -C "$work/tmp/rgpack" rg
  mkdir -p "$work/cs"
  (
    cd "$work/cs"
    printf '{"name":"coi-code-server","private":true}\n' >package.json
    # unsafe_perm: code-server's postinstall.sh refuses root without it (it reads the env var).
    # yes: node-pty's postinstall runs `npx node-gyp`, which cancels without a TTY otherwise.
    TMPDIR="$work/tmp" npm_config_unsafe_perm=true npm_config_yes=true npm_config_fund=false npm_config_audit=false \
      npm install --no-save "code-server@$CS_VERSION" --foreground-scripts >"$work/npm-install.log" 2>&1 ||
      { tail -n 60 "$work/npm-install.log"; say "ERROR: npm install code-server@$CS_VERSION failed (log above)"; exit 1; }
  )
  # Its own XDG dirs: code-server writes a config file and logs under $HOME otherwise.
  got=$(XDG_CONFIG_HOME="$work/xdg-config" XDG_DATA_HOME="$work/xdg-data" \
    node "$work/cs/node_modules/code-server/out/node/entry.js" --version | tail -n1)
  case $got in
    "$CS_VERSION "*) ;;
    *) say "ERROR: installed code-server reports '$got', expected $CS_VERSION"; exit 1 ;;
  esac
  rm -rf "$CS_DIR"
  mv "$work/cs" "$CS_DIR"
  date -u +%FT%TZ >"$STAMP"
  say "code-server installed: $got ($((SECONDS - t1)) s)"
fi

say "done in $((SECONDS - t0)) s; code-server: $CS_DIR/node_modules/code-server/out/node/entry.js"
