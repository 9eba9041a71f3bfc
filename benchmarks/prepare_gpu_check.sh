#!/usr/bin/env bash
# Prepare, on the development machine, what benchmarks/gpu_check.sh needs on a lent GPU
# machine that cannot reach the internet: lightly and kornia as wheels (.whl/) and a
# class-balanced subset of Imagenette JPEGs (.data/). Both folders are git-ignored
# (.git/info/exclude) and travel with `carry: [".whl", ".data"]` (about 35 MiB).
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p .git/info
for path in /.whl/ /.data/; do grep -qx "$path" .git/info/exclude 2>/dev/null || echo "$path" >> .git/info/exclude; done

# The GPU image has torch, torchvision, numpy, pillow, pyyaml, tqdm, scikit-learn,
# tensorboard and matplotlib (device KINDS.md), Python 3.12; lightly's SimCLR parts
# import without its hydra / lightning requirements, so --no-deps is enough.
platforms=(--platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64
           --platform manylinux2014_x86_64 --platform any)
for pkg in lightly==1.6.0 kornia==0.9.0 kornia-rs==0.2.0; do
  python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
    --implementation cp "${platforms[@]}" -d .whl "$pkg"
done

src=${IMAGENETTE:-../shared/data/imagenette/train}
per_class=${PER_CLASS:-320}
rm -rf .data/imagenette && mkdir -p .data/imagenette/train
for cls in "$src"/*/; do
  name=$(basename "$cls")
  mkdir -p ".data/imagenette/train/$name"
  # (sed, not head: head exits after its lines, sort then dies of SIGPIPE and, under
  # pipefail, the script stops with status 141 at some class, leaving a partial .data)
  find "$cls" -maxdepth 1 -type f | sort | sed -n "1,${per_class}p" |
    xargs -I{} cp {} ".data/imagenette/train/$name/"
done
du -sh .whl .data
