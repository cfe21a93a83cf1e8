#!/usr/bin/env bash
# Installs the Debian 12 packages Courier builds and runs with. Idempotent:
# it asks apt only for what is missing, and does nothing when all is there.
set -euo pipefail

packages=(
  build-essential cmake make ccache pkg-config git
  libcaf-dev
  libprotobuf-dev protobuf-compiler
  libboost-dev libboost-system-dev
  catch2
  libcli11-dev nlohmann-json3-dev
  libssl-dev openssl libtomlplusplus-dev
  libsqlite3-dev
  etcd-server nftables iproute2 util-linux
  libgrpc++-dev protobuf-compiler-grpc python3-grpcio python3-protobuf
  grpc-proto  # gRPC's health and reflection protos, for the gateway's tests
  file  # CPack: dpkg-shlibdeps runs on the files `file` calls ELF (make package)
)

missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done
[ ${#missing[@]} -eq 0 ] && exit 0

if [ "$(id -u)" -ne 0 ]; then
  sudo=sudo
else
  sudo=
fi
echo "courier: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -q
$sudo apt-get install -y -q --no-install-recommends "${missing[@]}"
