#!/usr/bin/env bash
# Installs what wgllm needs to build and run on Debian 12, and nothing that is already there.
# Idempotent and quiet when everything is present; runs as root without prompts (uses sudo otherwise).
#   - Debian packages (apt), pinned to Debian 12's versions by the distribution itself.
#   - Dawn (WebGPU) from npm bun-webgpu-linux-x64@0.1.7, verified against its sha512 integrity.
#   - The test clients of tests/node (openai, playwright-core) with `npm ci`: exact versions and sha512
#     integrity from tests/node/package-lock.json.
#   - Only when no GPU Vulkan driver is installed: Mesa's lavapipe (software Vulkan) >= 25 from
#     bookworm-backports, unpacked into .deps/mesa (the system's Mesa is not touched; Debian 12's own
#     lavapipe 22.3 is too old for Dawn).
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
deps="$root/.deps"
mkdir -p "$deps"

say() { echo "install-deps: $*" >&2; }
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

apt_packages=(
  cmake g++ make ninja-build ccache pkg-config
  libgtest-dev libgmock-dev nlohmann-json3-dev libcli11-dev python3-jinja2
  libvulkan1 libegl1 libegl-mesa0 libegl-dev openssl ca-certificates
  libedit-dev libcpp-httplib-dev openmpi-bin libopenmpi-dev
  clang libclang-rt-14-dev tmux
  emscripten chromium
)
# lavapipe 25's shared-library needs, all from Debian 12 main.
lavapipe_libs=(
  libllvm15 libdrm-amdgpu1 libdrm2 libelf1 libexpat1 libwayland-client0 libx11-xcb1 libxcb-dri3-0
  libxcb-present0 libxcb-randr0 libxcb-shm0 libxcb-sync1 libxcb-xfixes0 libxcb1 libxshmfence1 libzstd1 zlib1g
)

missing_packages() {
  local p
  for p in "$@"; do
    dpkg-query -W -f='${Status}\n' "$p" 2>/dev/null | grep -q "install ok installed" || echo "$p"
  done
}

apt_updated=0
apt_install() {
  local missing
  missing=$(missing_packages "$@")
  [ -z "$missing" ] && return 0
  say "apt-get install $(echo $missing)"
  if [ $apt_updated = 0 ]; then as_root apt-get update -qq; apt_updated=1; fi
  # shellcheck disable=SC2086
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $missing >/dev/null
}

apt_install "${apt_packages[@]}"
# npm fetches Dawn; a machine may already have Node.js from elsewhere (its npm comes with it).
command -v npm >/dev/null 2>&1 || apt_install nodejs npm

# --- Dawn ------------------------------------------------------------------------------------------
dawn_pkg="bun-webgpu-linux-x64@0.1.7"
dawn_integrity="sha512-UEP7UZdEhx9otvkZczjsszL8ZVlrODANQvgl+C88/bNVmxDoFi7w1fWzGi1sZyakiETjmtFDq2/xCLhbSZxjqw=="
dawn_dir="$deps/dawn"
if [ ! -f "$dawn_dir/libwebgpu_wrapper.so" ] || [ "$(cat "$dawn_dir/integrity" 2>/dev/null)" != "$dawn_integrity" ]; then
  say "fetching Dawn ($dawn_pkg) from npm"
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' EXIT
  (cd "$tmp" && npm pack --silent "$dawn_pkg" >/dev/null)
  tgz=$(ls "$tmp"/*.tgz)
  got="sha512-$(openssl dgst -sha512 -binary "$tgz" | base64 -w0)"
  if [ "$got" != "$dawn_integrity" ]; then
    say "integrity mismatch for $dawn_pkg: expected $dawn_integrity, got $got"
    exit 1
  fi
  rm -rf "$dawn_dir" && mkdir -p "$dawn_dir"
  tar -xzf "$tgz" -C "$tmp"
  cp "$tmp/package/libwebgpu_wrapper.so" "$tmp/package/LICENSE" "$dawn_dir/"
  echo "$dawn_integrity" >"$dawn_dir/integrity"
  rm -rf "$tmp"
  trap - EXIT
fi

# --- npm test clients ------------------------------------------------------------------------------
node_dir="$root/tests/node"
if [ ! -f "$node_dir/node_modules/.package-lock.json" ] || ! cmp -s "$node_dir/package-lock.json" "$node_dir/.installed-lock"; then
  say "npm ci in tests/node (openai, playwright-core)"
  (cd "$node_dir" && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error >/dev/null)
  cp "$node_dir/package-lock.json" "$node_dir/.installed-lock"
fi

# --- software Vulkan, only where no GPU driver is installed -----------------------------------------
has_gpu_vulkan_driver() {
  local d f
  for d in /etc/vulkan/icd.d /usr/share/vulkan/icd.d /usr/local/share/vulkan/icd.d /usr/local/nvidia/share/vulkan/icd.d; do
    for f in "$d"/*.json; do
      [ -e "$f" ] || continue
      case "$(basename "$f")" in lvp_icd*) continue ;; esac
      # Mesa's hardware ICDs are installed as a set even without the hardware: count them only if the
      # kernel exposes a GPU render node.
      case "$(basename "$f")" in radeon_icd* | intel_icd* | intel_hasvk_icd* | nouveau_icd* | virtio_icd* | asahi_icd* | broadcom_icd* | freedreno_icd* | panfrost_icd* | powervr_icd* | gfxstream_vk_icd*)
        ls /dev/dri/renderD* >/dev/null 2>&1 || continue ;;
      esac
      return 0
    done
  done
  return 1
}

mesa_dir="$deps/mesa"
mesa_icd="$mesa_dir/lvp_icd.json"
if ! has_gpu_vulkan_driver && [ ! -f "$mesa_icd" ]; then
  apt_install "${lavapipe_libs[@]}"
  say "fetching Mesa lavapipe (>= 25) from bookworm-backports into $mesa_dir"
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' EXIT
  mkdir -p "$tmp/lists/partial" "$tmp/parts"
  echo "deb http://deb.debian.org/debian bookworm-backports main" >"$tmp/sources.list"
  chmod -R a+rwx "$tmp"
  o=(-o "Dir::Etc::sourcelist=$tmp/sources.list" -o "Dir::Etc::sourceparts=$tmp/parts" -o "Dir::State::Lists=$tmp/lists"
     -o "APT::Sandbox::User=root")
  apt-get "${o[@]}" update -qq
  (cd "$tmp" && apt-get "${o[@]}" download -qq mesa-vulkan-drivers)
  deb=$(ls "$tmp"/mesa-vulkan-drivers_*.deb)
  version=$(dpkg-deb -f "$deb" Version)
  if dpkg --compare-versions "$version" lt 25; then
    say "bookworm-backports offers mesa-vulkan-drivers $version; Dawn needs >= 25"
    exit 1
  fi
  rm -rf "$mesa_dir" && mkdir -p "$mesa_dir"
  dpkg-deb -x "$deb" "$mesa_dir/root"
  # The loader resolves a relative library_path against the manifest's folder: the tree stays movable.
  lvp=$(cd "$mesa_dir" && find root -name libvulkan_lvp.so | head -n1)
  api=$(sed -n 's/.*"api_version": *"\([^"]*\)".*/\1/p' "$mesa_dir/root/usr/share/vulkan/icd.d/lvp_icd.json")
  cat >"$mesa_icd.tmp" <<JSON
{
    "ICD": {
        "api_version": "$api",
        "library_path": "$lvp"
    },
    "file_format_version": "1.0.0"
}
JSON
  echo "$version" >"$mesa_dir/version"
  mv "$mesa_icd.tmp" "$mesa_icd"
  rm -rf "$tmp"
  trap - EXIT
fi
exit 0
