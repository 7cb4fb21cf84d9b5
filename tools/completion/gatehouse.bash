# bash completion for gatehouse: subcommands, and each subcommand's flags as
# its own --help lists them (so the completion never lags the binary).
_gatehouse() {
  local cur=${COMP_WORDS[COMP_CWORD]}
  local gatehouse=${COMP_WORDS[0]}
  if [ "$COMP_CWORD" -eq 1 ]; then
    COMPREPLY=($(compgen -W "$("$gatehouse" --help 2>/dev/null | awk '/^  [a-z-]+ /{print $1}') --help --version" -- "$cur"))
    return
  fi
  case $cur in
    -*)
      COMPREPLY=($(compgen -W "$("$gatehouse" "${COMP_WORDS[1]}" --help 2>/dev/null | grep -oE -- '--[a-z-]+' | sort -u)" -- "$cur"))
      ;;
    *)
      COMPREPLY=($(compgen -f -- "$cur"))
      ;;
  esac
}
complete -o filenames -F _gatehouse gatehouse
