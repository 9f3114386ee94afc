#!/usr/bin/zsh -f
# SPDX-License-Identifier: MIT
# Completes one command line in a real interactive zsh (driven through zsh/zpty) and prints the
# candidates each compadd call offered, one "match: ..." line per call.
# usage: zsh -f zsh_complete.zsh FPATH_DIR 'airlock update --fetcher '
zmodload zsh/zpty || exit 2
dir=$1 line=$2 out=$(mktemp)
zpty z zsh -f -i
zpty -w z "fpath=($dir \$fpath); autoload -U compinit; compinit -u -D"
zpty -w z 'compadd() { local -a m; builtin compadd -O m "$@"; print -r -- "match: ${(j: :)m}" >>'$out'; builtin compadd "$@" }'
zpty -w z "print ready >>$out"
wait_for() { for i in {1..200}; do grep -qx "$1" $out && return 0; sleep 0.05; done; return 1 }
wait_for ready || { print "zsh did not start" >&2; rm -f $out; exit 2 }
zpty -w -n z "$line"$'\t'
for i in {1..200}; do grep -q '^match:' $out && break; sleep 0.05; done
sleep 0.3  # let the completion widget finish its other compadd calls
zpty -w z $'\C-u'"print done >>$out"
wait_for done || { print "the completion did not finish" >&2; rm -f $out; exit 2 }
zpty -d z
grep '^match:' $out
rc=$?
rm -f $out
exit $rc
