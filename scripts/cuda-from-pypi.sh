#!/usr/bin/env bash
# cuda-from-pypi.sh: a CUDA 13.0 toolkit for building `precis --features cuda` from PyPI wheels,
# on a machine with no system CUDA toolkit (and no GPU needed to build).
#
#   scripts/cuda-from-pypi.sh [DIR]        # default DIR: $HOME/.cache/precis-cuda
#   . DIR/env.sh && CUDA_COMPUTE_CAP=90 cargo build --release --features cuda
#
# What it makes, in DIR:
#   venv/     the wheels (nvcc, nvvm, crt headers, CCCL, cudart, cuBLAS, cuRAND, nvrtc), pinned
#             to 13.0: candle's kernels ship as PTX that the driver compiles at run time, and
#             nvcc 13.0's PTX (version 9.0) loads on every CUDA 13 driver (R580+); cudarc 0.19
#             also knows toolkits only up to 13.4.
#   toolkit/  the layout the build expects (bin, include, nvvm, lib with unversioned lib*.so
#             names, which the wheels lack), plus lib/stubs/libcuda.so: a link-time stand-in
#             for the driver library (one function per entry point cudarc declares, each
#             returning CUDA_ERROR_STUB_LIBRARY), since the wheels do not ship NVIDIA's stub.
#             Never put lib/stubs on LD_LIBRARY_PATH: at run time libcuda.so.1 must be the
#             real driver's.
#   env.sh    CUDA_HOME and PATH for the build.
#
# The build takes long the first time (candle's quantized-matmul CUDA kernels: about 35 minutes
# on 2 cores); later builds reuse them. Run time needs the NVIDIA driver (CUDA >= 13.0) and
# libcudart.so.13, libcublas.so.13 (+ libcublasLt), libcurand.so.10: the toolkit/lib folder
# here, any CUDA 13 install, or `pip install nvidia-cuda-runtime nvidia-cublas nvidia-curand`.
set -euo pipefail
DIR=${1:-$HOME/.cache/precis-cuda}
mkdir -p "$DIR"
DIR=$(cd "$DIR" && pwd)

python3 -m venv "$DIR/venv"
"$DIR/venv/bin/pip" install --quiet \
  nvidia-cuda-nvcc==13.0.88 nvidia-nvvm==13.0.88 nvidia-cuda-crt==13.0.88 \
  nvidia-cuda-runtime==13.0.96 nvidia-cuda-cccl==13.0.85 nvidia-cuda-nvrtc==13.0.88 \
  nvidia-cublas==13.0.2.14 nvidia-curand==10.4.0.35
C=$(echo "$DIR"/venv/lib/python3*/site-packages/nvidia/cu13)
[ -x "$C/bin/nvcc" ] || { echo "nvcc not found under $C" >&2; exit 1; }

T="$DIR/toolkit"
mkdir -p "$T/lib/stubs"
ln -sfn "$C/bin" "$T/bin"
ln -sfn "$C/include" "$T/include"
ln -sfn "$C/nvvm" "$T/nvvm"
ln -sfn lib "$T/lib64"
for f in "$C"/lib/*; do ln -sfn "$f" "$T/lib/"; done
for l in cublas cublasLt cudart nvrtc; do ln -sfn "lib$l.so.13" "$T/lib/lib$l.so"; done
ln -sfn libcurand.so.10 "$T/lib/libcurand.so"

# The driver entry points cudarc may link to, from its own declarations.
find_sys() { ls -d "${CARGO_HOME:-$HOME/.cargo}"/registry/src/*/cudarc-0.19.*/src/driver/sys/mod.rs 2>/dev/null | tail -1; }
SYS=$(find_sys)
if [ -z "$SYS" ]; then (cd "$(dirname "$0")/.." && cargo fetch --locked) && SYS=$(find_sys); fi
grep -oE '^\s+fn cu[A-Za-z0-9_]+\(' "$SYS" | sed -E 's/^\s+fn //; s/\($//' | sort -u \
  | awk 'BEGIN { print "/* link-time stand-in for libcuda.so.1: never load it */" }
         { print "int " $1 "(void) { return 34; }" }' > "$T/lib/stubs/libcuda_stub.c"
cc -shared -fPIC -O2 -Wl,-soname,libcuda.so.1 -o "$T/lib/stubs/libcuda.so" "$T/lib/stubs/libcuda_stub.c"

cat > "$DIR/env.sh" <<ENV
# Source before: CUDA_COMPUTE_CAP=90 cargo build --release --features cuda
export CUDA_HOME="$T"
export PATH="$T/bin:\$PATH"
ENV
"$T/bin/nvcc" --version | tail -2
echo "ok: . $DIR/env.sh, then CUDA_COMPUTE_CAP=<your card, e.g. 90> cargo build --release --features cuda"
