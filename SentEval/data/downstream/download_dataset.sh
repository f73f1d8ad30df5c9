#!/usr/bin/env bash
# Fetch the public SentEval evaluation data into this folder (SentEval's canonical layout).
#
# The project already ships an offline copy of every task it evaluates; this script is for
# refreshing it or restoring a deleted task on a machine with internet access. It downloads the
# archive of SentEval data that SimCSE distributes, unpacks it in a temporary folder and copies
# each task folder into place. Task folders that already exist are left alone unless --force is
# given; with --force, files from the archive overwrite ours, and files only we have (licence
# and readme files) stay.
#
# Usage: bash SentEval/data/downstream/download_dataset.sh [--force]
# Environment: SENTEVAL_ARCHIVE_URL overrides the archive address (e.g. a local mirror).
set -euo pipefail

url="${SENTEVAL_ARCHIVE_URL:-https://huggingface.co/datasets/princeton-nlp/datasets-for-simcse/resolve/main/senteval.tar}"
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
tasks=(STS SICK MR CR SUBJ MPQA SST TREC MRPC SNLI)
# one file per task that must exist afterwards
required=(
  STS/STS12-en-test/STS.input.MSRpar.txt STS/STS13-en-test/STS.input.headlines.txt
  STS/STS14-en-test/STS.input.images.txt STS/STS15-en-test/STS.gs.belief.txt
  STS/STS16-en-test/STS.gs.postediting.txt STS/STSBenchmark/sts-test.csv SICK/SICK_test_annotated.txt
  MR/rt-polarity.pos CR/custrev.neg SUBJ/subj.objective MPQA/mpqa.pos SST/binary/sentiment-test
  TREC/TREC_10.label MRPC/msr_paraphrase_test.txt
)

force=0
case "${1:-}" in
  "") ;;
  --force) force=1 ;;
  -h|--help) sed -n '2,14p' "$0"; exit 0 ;;
  *) echo "unknown argument: $1 (use --force or nothing)" >&2; exit 2 ;;
esac

work="$(mktemp -d "$here/.download.XXXXXX")"
trap 'rm -rf "$work"' EXIT

echo "downloading $url"
if command -v curl >/dev/null 2>&1; then
  curl --fail --location --retry 3 --output "$work/senteval.tar" "$url"
elif command -v wget >/dev/null 2>&1; then
  wget --tries=3 --output-document="$work/senteval.tar" "$url"
else
  echo "neither curl nor wget is installed" >&2
  exit 1
fi

mkdir "$work/unpacked"
tar -xf "$work/senteval.tar" -C "$work/unpacked"
# the archive may hold the task folders at its top or below a prefix such as downstream/
source_dir="$(find "$work/unpacked" -maxdepth 4 -type d -name STS -printf '%h\n' | head -n 1)"
if [[ -z "$source_dir" || ! -d "$source_dir/MR" ]]; then
  echo "the archive does not contain SentEval task folders (STS/, MR/, ...)" >&2
  exit 1
fi

for task in "${tasks[@]}"; do
  if [[ ! -d "$source_dir/$task" ]]; then
    echo "archive has no $task/; skipped"
  elif [[ -d "$here/$task" && $force -eq 0 ]]; then
    echo "$task/ already present; kept (use --force to overwrite)"
  else
    mkdir -p "$here/$task"
    cp -R "$source_dir/$task/." "$here/$task/"
    echo "$task/ installed"
  fi
done

missing=0
for file in "${required[@]}"; do
  if [[ ! -s "$here/$file" ]]; then
    echo "missing after download: $file" >&2
    missing=1
  fi
done
exit "$missing"
