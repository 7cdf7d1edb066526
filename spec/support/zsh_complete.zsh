#!/usr/bin/env zsh
# Runs zsh's real completion system on a command line and prints each match,
# one a line: zsh -f spec/support/zsh_complete.zsh FPATH_DIR 'favcrm pl'
# An interactive zsh runs in a pseudo-terminal (zsh/zpty) with compinit and
# FPATH_DIR (holding _favcrm) on $fpath; compadd is wrapped so that every
# match the completion function adds is printed as "<m>MATCH"; the line is
# typed with a TAB after it (bound to complete-word and an end marker). Exits 1 when the shell did not finish within
# 20 s (the deadline of every read).
zmodload zsh/zpty || exit 2
typeset -F SECONDS
dir=$1 line=$2
zpty -b z 'zsh -f -i'
# compinit reads every function on $fpath (the whole system's take seconds):
# the Completion folder (compinit) and Base (the completion system) are
# enough for _favcrm.
fp=($dir ${(M)fpath:#*/Completion(|/Base)})
zpty -w z "PS1=; PROMPT=; RPROMPT=; unsetopt zle_bracketed_paste 2>/dev/null; setopt no_beep;"\
" fpath=(${(@q)fp}); autoload -Uz compinit; compinit -u -D;"\
' compadd() { local -a __m; builtin compadd -O __m "$@"; print -rl -- "<m>"${^__m} >&2; builtin compadd "$@"; };'\
' __t() { zle complete-word; print -u2 "<done>TAB"; }; zle -N __t; bindkey "^I" __t;'\
" exec 2>&1; echo READY''1"
out=""
SECONDS=0
while (( SECONDS < 20 )); do
  if zpty -r -t z chunk; then out+=$chunk; else sleep 0.02; fi # zpty -r reads a line at most
  [[ $out == *READY1* ]] && break
done
[[ $out == *READY1* ]] || { print -r -- "zsh did not start: $out" >&2; exit 1; }
# TAB runs complete-word, then prints a marker: keys typed ahead of the
# end of a completion would cut it short, so the rest waits for it
zpty -w -n z "$line"$'\t'
out=""
SECONDS=0
while (( SECONDS < 20 )); do
  if zpty -r -t z chunk; then out+=$chunk; else sleep 0.02; fi
  [[ $out == *'<done>TAB'* ]] && break
done
zpty -w -n z $'\C-u'
zpty -w z "echo DONE''2"
while (( SECONDS < 20 )); do
  if zpty -r -t z chunk; then out+=$chunk; else sleep 0.02; fi
  [[ $out == *DONE2* ]] && break
done
zpty -d z
[[ $out == *DONE2* ]] || { print -r -- "zsh did not answer: $out" >&2; exit 1; }
print -r -- "$out" | tr -d '\r' | grep -o '<m>[^[:space:]]*' | sed 's/^<m>//' | sort -u
