#!/usr/bin/env bash
# Installs what the browser tests need, idempotently and quietly: Node.js and Chromium
# (Debian packages) and playwright-core (npm ci from the committed package-lock.json).
# Chromium comes from apt, never from `npx playwright install`.
set -euo pipefail
cd "$(dirname "$0")"

if [ "$(id -u)" -eq 0 ]; then SUDO=""; else SUDO="sudo"; fi
missing=()
command -v node >/dev/null 2>&1 || missing+=(nodejs)
command -v npm >/dev/null 2>&1 || missing+=(npm)
[ -x "${CHROMIUM_PATH:-/usr/bin/chromium}" ] || missing+=(chromium)
if ((${#missing[@]})); then
  echo "== browser tests: installing ${missing[*]}"
  $SUDO apt-get update -qq
  if ! DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null; then
    echo "browser tests: apt-get install ${missing[*]} failed; the browser tests cannot run" >&2
    exit 1
  fi
fi
if [ ! -x "${CHROMIUM_PATH:-/usr/bin/chromium}" ]; then
  echo "browser tests: Chromium is still missing at ${CHROMIUM_PATH:-/usr/bin/chromium}" >&2
  exit 1
fi

# npm ci only when the installed playwright-core is not the locked one.
want=$(node -p "require('./package-lock.json').packages['node_modules/playwright-core'].version")
have=$(node -p "require('./node_modules/playwright-core/package.json').version" 2>/dev/null || true)
if [ "$want" != "$have" ]; then
  echo "== browser tests: npm ci (playwright-core $want)"
  npm ci --no-audit --no-fund --loglevel=error >/dev/null
fi
node -e "require('playwright-core')" || { echo "browser tests: playwright-core did not install" >&2; exit 1; }
