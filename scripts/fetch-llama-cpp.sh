#!/usr/bin/env bash
# Builds llama.cpp's `llama-bench` into target/llama.cpp, for
# scripts/vs-llama-cpp.sh. Only package registries are reachable from our
# machines, so the source comes from PyPI: the llama-cpp-python sdist carries
# a whole llama.cpp tree (vendor/llama.cpp). Pinned by version and checksum.
#
#   scripts/fetch-llama-cpp.sh
#
# Needs cmake, ninja and numpy (`pip install cmake ninja numpy tqdm pyyaml`)
# and a C++ compiler; the build takes about ten minutes on two cores.
set -euo pipefail
cd "$(dirname "$0")/.."
version=0.3.36
sha256=832db0699007f1be95a7e41ef12e88926b02ba836461e36a36372db2760c1a2e
url=https://files.pythonhosted.org/packages/ec/e9/e7de2b0463ea3ffbf0ede6cb21b58c1258a8f6521aae45ca773a59fe7cf3/llama_cpp_python-$version.tar.gz
dest=target/llama.cpp
if [ -x "$dest/build/bin/llama-bench" ]; then
    echo "llama-bench is built: $dest/build/bin/llama-bench"
    exit 0
fi
mkdir -p target
tarball=target/llama_cpp_python-$version.tar.gz
[ -f "$tarball" ] || curl -sSfL -o "$tarball" "$url"
echo "$sha256  $tarball" | sha256sum -c --quiet
rm -rf "$dest" "target/llama_cpp_python-$version"
tar -xzf "$tarball" -C target
mv "target/llama_cpp_python-$version/vendor/llama.cpp" "$dest"
rm -rf "target/llama_cpp_python-$version"
# GGML_NATIVE: the CPU's own vector width (AVX2 or AVX-512), as seqc uses it.
cmake -S "$dest" -B "$dest/build" -G Ninja -DCMAKE_BUILD_TYPE=Release -DGGML_NATIVE=ON \
    -DLLAMA_CURL=OFF -DLLAMA_OPENSSL=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF \
    -DLLAMA_BUILD_SERVER=OFF >/dev/null
ninja -C "$dest/build" llama-bench
echo "built $dest/build/bin/llama-bench"
