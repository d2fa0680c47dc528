#!/usr/bin/env bash
# Checks that the documentation points only at things inside this repository, and that they
# exist. Fast (a second or so), no dependencies beyond bash, grep, sed and awk. tools/test.sh
# runs it before building; run it by hand after moving or renaming files:
#
#   tools/check_doc_links.sh          # exit 0: all good; 1: every problem listed as FILE:LINE: ...
#
# What fails:
#   1. a relative markdown link, [text](path) or [text](path#anchor), in any tracked *.md file
#      (outside code blocks and `code spans`) whose file does not exist, or whose anchor names
#      no heading of the target page (GitHub's heading slugs, approximated for non-ASCII text).
#      http(s)://, mailto: and other scheme links are ignored;
#   2. a pointer to a doc page in ANY tracked text file, code comments included:
#      docs/<page>.md or README.md, with or without #anchor, relative to the repository root;
#   3. a `path` in a code span of a *.md file that starts with one of the repository's top-level
#      folders (core/, docs/, tools/, ...) and does not exist. Placeholders are skipped: spans
#      with <, >, {, }, *, $ or "...";
#   4. a line-number citation in a *.md file (`file.cpp:42`, `:10-20`): cite a symbol and a
#      file instead, since line numbers drift;
#   5. any file that names the old external design notes (the upper-case word that the notes'
#      file name starts with) or a path outside the repository (a sibling folder reached with ../,
#      the machine's work tree).
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1

if git rev-parse --is-inside-work-tree >/dev/null 2>&1; then
  mapfile -t files < <(git ls-files --cached --others --exclude-standard | while read -r f; do
    [[ -f $f ]] && printf '%s\n' "$f"
  done)
else
  # No git (a source tarball): every file but the build and output folders of .gitignore.
  mapfile -t files < <(find . -type f -not -path './.git/*' -not -path './build*' \
    -not -path './out/*' -not -path './runs/*' -not -path './gpu_check_out/*' \
    -not -path './.cache/*' -not -path './.data/*' -not -path './.whl/*' | sed 's|^\./||')
fi
md_files=()
for f in "${files[@]}"; do
  [[ $f == *.md ]] && md_files+=("$f")
done
top_dirs=$(printf '%s\n' "${files[@]}" | grep / | cut -d/ -f1 | sort -u | grep -v '^\.' | paste -sd'|')

problems=0
report() {
  echo "$1"
  problems=$((problems + 1))
}

# The GitHub anchors of a markdown file, one a line: headings outside code blocks, slugged
# (lower case, punctuation dropped, spaces to hyphens, -1/-2... for repeats), plus explicit
# <a name="..."> / id="..." anchors.
anchors_of() {
  # shellcheck disable=SC1112  # the typographic quotes in the awk program are meant
  awk '
    /^[ \t]*(```|~~~)/ { fence = !fence; next }
    fence { next }
    /^#+[ \t]/ {
      h = $0
      sub(/^#+[ \t]+/, "", h); sub(/[ \t]+#+[ \t]*$/, "", h)
      h = tolower(h)
      # common non-ASCII punctuation that GitHub drops
      n = split("— – → ← × · ∅ ≤ ≥ ’ “ ” … ≈ ∈ ⊙ ∑ Σ", junk, " ")
      for (i = 1; i <= n; i++) gsub(junk[i], "", h)
      out = ""
      for (i = 1; i <= length(h); i++) {
        c = substr(h, i, 1)
        if (c ~ /[a-z0-9_-]/) out = out c
        else if (c == " ") out = out "-"
        else if (c > "~") out = out c  # other non-ASCII bytes (letters) are kept
      }
      if (out in seen) { seen[out]++; print out "-" seen[out] } else { seen[out] = 0; print out }
    }
    {
      line = $0
      while (match(line, /(name|id)="[^"]+"/)) {
        a = substr(line, RSTART, RLENGTH); sub(/^[a-z]+="/, "", a); sub(/"$/, "", a)
        print a
        line = substr(line, RSTART + RLENGTH)
      }
    }' "$1"
}

declare -A anchor_cache=()
has_anchor() {  # file anchor
  local f=$1 a=$2
  if [[ -z ${anchor_cache[$f]+x} ]]; then
    anchor_cache[$f]=$'\n'"$(anchors_of "$f")"$'\n'
  fi
  [[ ${anchor_cache[$f]} == *$'\n'"$a"$'\n'* ]]
}

# Normalizes a/b/../c and ./ segments.
normalize() {
  local IFS=/ part out=()
  for part in $1; do
    case $part in
      '' | .) ;;
      ..) ((${#out[@]})) && unset 'out[${#out[@]}-1]' || out+=(..) ;;
      *) out+=("$part") ;;
    esac
  done
  (IFS=/; echo "${out[*]}")
}

# check_target WHERE BASE_DIR TARGET: TARGET is path[#anchor], relative to BASE_DIR.
check_target() {
  local where=$1 base=$2 target=$3 path anchor resolved
  path=${target%%#*}
  anchor=
  [[ $target == *#* ]] && anchor=${target#*#}
  if [[ -z $path ]]; then
    resolved=${where%%:*}  # #anchor: the same file
  else
    path=${path%%\?*}
    resolved=$(normalize "${base:+$base/}$path")
  fi
  if [[ ! -e $resolved ]]; then
    report "$where: link to a missing file: $target"
    return
  fi
  if [[ -n $anchor && $resolved == *.md && -f $resolved ]] && ! has_anchor "$resolved" "$anchor"; then
    report "$where: no heading for the anchor #$anchor in $resolved"
  fi
}

# ---- 1, 3, 4: markdown files ----
for f in "${md_files[@]}"; do
  dir=$(dirname "$f")
  [[ $dir == . ]] && dir=
  # FILE-LINE <tab> KIND <tab> VALUE, with code blocks skipped.
  while IFS=$'\t' read -r line kind value; do
    where="$f:$line"
    case $kind in
      link)
        case $value in
          http://* | https://* | mailto:* | ftp://*) continue ;;
          [a-zA-Z]*:*) [[ ${value%%:*} =~ ^[a-zA-Z][a-zA-Z0-9+.-]*$ ]] && continue ;;
        esac
        check_target "$where" "$dir" "$value"
        ;;
      span)
        first=${value%% *}
        [[ $first =~ ^($top_dirs)/ ]] || continue
        [[ $first =~ [\<\>\{\}\*\$] || $first == *...* ]] && continue
        first=${first%%#*}
        first=${first%:}
        [[ $first =~ :[0-9] ]] && continue  # reported as a line-number citation
        [[ -e $first ]] || report "$where: \`$first\` names a path that does not exist"
        ;;
      lineno)
        report "$where: line-number citation \`$value\`: cite a symbol and a file instead"
        ;;
    esac
  done < <(awk '
    /^[ \t]*(```|~~~)/ { fence = !fence; next }
    fence { next }
    {
      line = $0
      # code spans: check them, then blank them out so links inside code are not links
      rest = line; clean = ""
      while (match(rest, /`[^`]+`/)) {
        span = substr(rest, RSTART + 1, RLENGTH - 2)
        clean = clean substr(rest, 1, RSTART - 1) " "
        rest = substr(rest, RSTART + RLENGTH)
        if (span ~ /\.(c|cc|cpp|cu|cuh|h|hpp|py|sh|cmake|txt|md|json):[0-9]+/ || span ~ /^:[0-9]+(-[0-9]+)?$/)
          print FNR "\tlineno\t" span
        else
          print FNR "\tspan\t" span
      }
      clean = clean rest
      # inline links [text](target "title") and images ![alt](target)
      s = clean
      while (match(s, /\]\([^) \t]+/)) {
        t = substr(s, RSTART + 2, RLENGTH - 2)
        sub(/^</, "", t); sub(/>$/, "", t)
        print FNR "\tlink\t" t
        s = substr(s, RSTART + RLENGTH)
      }
      # reference definitions [label]: target
      if (match(clean, /^[ \t]*\[[^]]+\]:[ \t]+[^ \t]+/)) {
        t = clean; sub(/^[ \t]*\[[^]]+\]:[ \t]+/, "", t); sub(/[ \t].*$/, "", t)
        print FNR "\tlink\t" t
      }
    }' "$f")
done

# ---- 2 and 5: every tracked text file ----
word="DESI""GN"
sh="sha""red/"  # split, so that this file does not name such a path itself
outside="(\\.\\.""/)+$sh|/wo""rk/|(^|[[:space:]\`\"'(])$sh"
while IFS= read -r hit; do
  report "${hit%%:*}:$(cut -d: -f2 <<<"$hit"): names the external design notes; point at docs/design.md or docs/it3.md instead"
done < <(grep -InE "\\b$word\\b" "${files[@]}" 2>/dev/null)
while IFS= read -r hit; do
  report "$(cut -d: -f1,2 <<<"$hit"): names a path outside the repository"
done < <(grep -InE "$outside" "${files[@]}" 2>/dev/null)
while IFS=: read -r file line ptr; do
  check_target "$file:$line" "" "$ptr"
done < <(grep -InoE "(^|[^A-Za-z0-9_./-])(docs/[A-Za-z0-9_.-]+\.md|README\.md)(#[A-Za-z0-9_-]+)?" \
  "${files[@]}" 2>/dev/null | sed -E 's/^([^:]*:[0-9]+:)[^dR]*/\1/')

if ((problems)); then
  echo "check_doc_links: $problems problem(s)" >&2
  exit 1
fi
echo "check_doc_links: ${#md_files[@]} markdown files and ${#files[@]} tracked files checked, no problems"
