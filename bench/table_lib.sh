# Shared by the perplexity tables (source it after setting llmq and shared): quantize a model with
# every calibration seed, evaluate each output, print one markdown row with the mean ± half the
# range over seeds. Sets eval_text, calib and work (a scratch folder, removed on exit); start_model
# <name> sets model and fp (the float model's perplexity). row needs row_prefix ("| model | level "
# or "| model ") and optionally extra (a Python expression over the last report `d`, printed as
# one more column).
eval_text="$shared/data/tinystories/TinyStories-valid-prefix.txt"
calib="$shared/data/tinystories/TinyStories-train-sample.txt"
work=$(mktemp -d); trap 'rm -rf "$work"' EXIT
j() { python3 -c "import json,sys; d=json.load(open(sys.argv[1])); exec('print(' + sys.argv[2] + ')')" "$@"; }

start_model() {
  model="$shared/models/$1"
  "$llmq" eval ppl "$model" --data "$eval_text" --json > "$work/fp.json" 2>/dev/null
  fp=$(j "$work/fp.json" "d['perplexity']")
}

row() {  # binary, label, setting, seeds ("" = zero-shot), quantize args...
  local bin=$1 label=$2 setting=$3 seeds=$4; shift 4
  local ppls=() secs=() bits="" rss="" more=""
  for seed in ${seeds:-none}; do
    local cal=(); [ "$seed" = none ] || cal=(--calib "$calib" --seed "$seed")
    "$bin" quantize "$@" "${cal[@]}" --json "$model" "$work/q" --overwrite > "$work/q.json" 2>/dev/null
    "$llmq" eval ppl "$work/q" --data "$eval_text" --json > "$work/e.json" 2>/dev/null
    ppls+=("$(j "$work/e.json" "d['perplexity']")")
    secs+=("$(j "$work/q.json" "d['seconds']")")
    bits=$(j "$work/q.json" "d['bits_per_weight']")
    rss=$(j "$work/q.json" "d['peak_rss_bytes'] / 2**20")
    [ -z "${extra:-}" ] || more=$(j "$work/q.json" "$extra")
  done
  echo "$row_prefix| $label | $setting: perplexity per seed ${ppls[*]}" >&2  # for paired comparisons
  python3 - "$row_prefix" "$label" "$setting" "$fp" "$bits" "$rss" "${ppls[*]}" "${secs[*]}" "$more" <<'PY'
import statistics as st, sys
prefix, label, setting, fp, bits, rss = sys.argv[1:7]
ppl = [float(v) for v in sys.argv[7].split()]; secs = [float(v) for v in sys.argv[8].split()]
more = f" {sys.argv[9]} |" if sys.argv[9] else ""
m = st.mean(ppl)
p = f"{m:.4f}" + (f" ± {(max(ppl) - min(ppl)) / 2:.4f}" if len(ppl) > 1 else "")
print(f"{prefix}| {label} | {setting} | {float(bits):.3f} |{more} {p} | {100 * (m / float(fp) - 1):+.2f}% | "
      f"{st.mean(secs):.1f} | {float(rss):.0f} |")
PY
}
