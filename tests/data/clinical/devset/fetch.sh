#!/bin/sh
# Rebuild tests/data/clinical/devset/features.csv from the public records (SOURCES.md says which).
#
#   sh tests/data/clinical/devset/fetch.sh [WORKDIR] [PYTHON]
#
# WORKDIR receives the records (a temporary directory by default; a clone of
# DeepPSP/torch_ecg already there is reused); run from the repository root.
set -eu
work=${1:-$(mktemp -d)}
python=${2:-python}
out=tests/data/clinical/devset/features.csv
commit=b10c415b7da062afc08b456920244c52594b75ee
if [ ! -d "$work/torch_ecg/.git" ]; then
    git clone --quiet --filter=blob:none --no-checkout https://github.com/DeepPSP/torch_ecg "$work/torch_ecg"
fi
git -C "$work/torch_ecg" checkout --quiet "$commit" -- sample-data/cinc2021
# 50 records of the 2021 challenge's training data (Georgia, PTB-XL, Chapman-Shaoxing), named by their prefix.
"$python" -m model.clinical.devset "$work/torch_ecg/sample-data/cinc2021" --source "CinC 2021" --output "$out"
# The real records tests/data/clinical already holds (the two LUDB records there only: the rest of LUDB is reserved).
"$python" -m model.clinical.devset tests/data/clinical/cinc2020 --source "CPSC 2018" --output "$out" --append
"$python" -m model.clinical.devset tests/data/clinical/ludb --source LUDB --output "$out" --append
"$python" -m model.clinical.devset tests/data/clinical/ptbdb-s0010_re-10s.hea --source PTB --output "$out" --append
