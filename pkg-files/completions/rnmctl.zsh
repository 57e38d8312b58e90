#compdef rnmctl

__rnmctl_complete() {
    local -ar non_empty_completions=("${@:#(|:*)}")
    local -ar empty_completions=("${(M)@:#(|:*)}")
    _describe -V '' non_empty_completions -- empty_completions -P $'\'\''
}

__rnmctl_custom_complete() {
    local -a completions
    completions=("${(@f)"$("${command_name}" "${@}" "${command_line[@]}")"}")
    if [[ "${#completions[@]}" -gt 1 ]]; then
        __rnmctl_complete "${completions[@]:0:-1}"
    fi
}

__rnmctl_cursor_index_in_current_word() {
    if [[ -z "${QIPREFIX}${IPREFIX}${PREFIX}" ]]; then
        printf 0
    else
        printf %s "${#${(z)LBUFFER}[-1]}"
    fi
}

_rnmctl() {
    emulate -RL zsh -G
    setopt extendedglob nullglob numericglobsort
    unsetopt aliases banghist

    local -xr SAP_SHELL=zsh
    local -x SAP_SHELL_VERSION
    SAP_SHELL_VERSION="$(builtin emulate zsh -c 'printf %s "${ZSH_VERSION}"')"
    local -r SAP_SHELL_VERSION

    local context state state_descr line
    local -A opt_args

    local -r command_name="${words[1]}"
    local -ar command_line=("${words[@]}")
    local -ir current_word_index="$((CURRENT - 1))"

    local -i ret=1
    local -ar arg_specs=(
        '--socket[The control socket (default\: $RNM_SOCKET, else /run/rnm/rnmd.sock).]:path:'
        '--json[Print the daemon'\''s JSON exactly as it answered.]'
        '--timeout[Give up after this many seconds.]:seconds:'
        '--version[Show the version.]'
        '(-h --help)'{-h,--help}'[Show help information.]'
        '(-): :->command'
        '(-)*:: :->arg'
    )
    _arguments -w -s -S : "${arg_specs[@]}" && ret=0
    case "${state}" in
    command)
        local -ar subcommands=(
            'ping:Check that rnmd answers.'
            'status:State, interfaces, sets and counters.'
            'reload:Re-read the config, all or nothing (root).'
            'plan:What a reload would change: the config on disk against the live table.'
            'sets:The managed sets: type, flags, element count, owners.'
            'set:Show a set, or add and delete manual entries.'
            'monitor:Follow live events: address changes, commits, resyncs, reloads, errors.'
            'metrics:Counters in Prometheus text format.'
            'plugins:Plugins.'
            'help:Show subcommand help information.'
        )
        _describe -V subcommand subcommands && ret=0
        ;;
    arg)
        case "${words[1]}" in
        ping|status|reload|plan|sets|set|monitor|metrics|plugins|help)
            "_rnmctl_${words[1]}" && ret=0
            ;;
        esac
        ;;
    esac

    return "${ret}"
}

_rnmctl_ping() {
    local -i ret=1
    local -ar arg_specs=(
        '--socket[The control socket (default\: $RNM_SOCKET, else /run/rnm/rnmd.sock).]:path:'
        '--json[Print the daemon'\''s JSON exactly as it answered.]'
        '--timeout[Give up after this many seconds.]:seconds:'
        '--version[Show the version.]'
        '(-h --help)'{-h,--help}'[Show help information.]'
    )
    _arguments -w -s -S : "${arg_specs[@]}" && ret=0

    return "${ret}"
}

_rnmctl_status() {
    local -i ret=1
    local -ar arg_specs=(
        '--socket[The control socket (default\: $RNM_SOCKET, else /run/rnm/rnmd.sock).]:path:'
        '--json[Print the daemon'\''s JSON exactly as it answered.]'
        '--timeout[Give up after this many seconds.]:seconds:'
        '--version[Show the version.]'
        '(-h --help)'{-h,--help}'[Show help information.]'
    )
    _arguments -w -s -S : "${arg_specs[@]}" && ret=0

    return "${ret}"
}

_rnmctl_reload() {
    local -i ret=1
    local -ar arg_specs=(
        '--socket[The control socket (default\: $RNM_SOCKET, else /run/rnm/rnmd.sock).]:path:'
        '--json[Print the daemon'\''s JSON exactly as it answered.]'
        '--timeout[Give up after this many seconds.]:seconds:'
        '--version[Show the version.]'
        '(-h --help)'{-h,--help}'[Show help information.]'
    )
    _arguments -w -s -S : "${arg_specs[@]}" && ret=0

    return "${ret}"
}

_rnmctl_plan() {
    local -i ret=1
    local -ar arg_specs=(
        '--socket[The control socket (default\: $RNM_SOCKET, else /run/rnm/rnmd.sock).]:path:'
        '--json[Print the daemon'\''s JSON exactly as it answered.]'
        '--timeout[Give up after this many seconds.]:seconds:'
        '--exit-code[Exit with 4 when the table differs from the config (0 when in sync).]'
        '--version[Show the version.]'
        '(-h --help)'{-h,--help}'[Show help information.]'
    )
    _arguments -w -s -S : "${arg_specs[@]}" && ret=0

    return "${ret}"
}

_rnmctl_sets() {
    local -i ret=1
    local -ar arg_specs=(
        '--socket[The control socket (default\: $RNM_SOCKET, else /run/rnm/rnmd.sock).]:path:'
        '--json[Print the daemon'\''s JSON exactly as it answered.]'
        '--timeout[Give up after this many seconds.]:seconds:'
        '--version[Show the version.]'
        '(-h --help)'{-h,--help}'[Show help information.]'
    )
    _arguments -w -s -S : "${arg_specs[@]}" && ret=0

    return "${ret}"
}

_rnmctl_set() {
    local -i ret=1
    local -ar arg_specs=(
        '--version[Show the version.]'
        '(-h --help)'{-h,--help}'[Show help information.]'
        '(-): :->command'
        '(-)*:: :->arg'
    )
    _arguments -w -s -S : "${arg_specs[@]}" && ret=0
    case "${state}" in
    command)
        local -ar subcommands=(
            'show:A set'\''s elements with owners and remaining timeouts.'
            'add:Add manual entries to a declared set (root).'
            'del:Delete manual entries from a set (root).'
        )
        _describe -V subcommand subcommands && ret=0
        ;;
    arg)
        case "${words[1]}" in
        show|add|del)
            "_rnmctl_set_${words[1]}" && ret=0
            ;;
        esac
        ;;
    esac

    return "${ret}"
}

_rnmctl_set_show() {
    local -i ret=1
    local -ar arg_specs=(
        '--socket[The control socket (default\: $RNM_SOCKET, else /run/rnm/rnmd.sock).]:path:'
        '--json[Print the daemon'\''s JSON exactly as it answered.]'
        '--timeout[Give up after this many seconds.]:seconds:'
        ':name:'
        '--version[Show the version.]'
        '(-h --help)'{-h,--help}'[Show help information.]'
    )
    _arguments -w -s -S : "${arg_specs[@]}" && ret=0

    return "${ret}"
}

_rnmctl_set_add() {
    local -i ret=1
    local -ar arg_specs=(
        '--socket[The control socket (default\: $RNM_SOCKET, else /run/rnm/rnmd.sock).]:path:'
        '--json[Print the daemon'\''s JSON exactly as it answered.]'
        '--timeout[Give up after this many seconds.]:seconds:'
        ':name:'
        '*:address:'
        '--version[Show the version.]'
        '(-h --help)'{-h,--help}'[Show help information.]'
    )
    _arguments -w -s -S : "${arg_specs[@]}" && ret=0

    return "${ret}"
}

_rnmctl_set_del() {
    local -i ret=1
    local -ar arg_specs=(
        '--socket[The control socket (default\: $RNM_SOCKET, else /run/rnm/rnmd.sock).]:path:'
        '--json[Print the daemon'\''s JSON exactly as it answered.]'
        '--timeout[Give up after this many seconds.]:seconds:'
        ':name:'
        '*:address:'
        '--version[Show the version.]'
        '(-h --help)'{-h,--help}'[Show help information.]'
    )
    _arguments -w -s -S : "${arg_specs[@]}" && ret=0

    return "${ret}"
}

_rnmctl_monitor() {
    local -i ret=1
    local -ar arg_specs=(
        '--socket[The control socket (default\: $RNM_SOCKET, else /run/rnm/rnmd.sock).]:path:'
        '--json[Print the daemon'\''s JSON exactly as it answered.]'
        '--timeout[Give up after this many seconds.]:seconds:'
        '--version[Show the version.]'
        '(-h --help)'{-h,--help}'[Show help information.]'
    )
    _arguments -w -s -S : "${arg_specs[@]}" && ret=0

    return "${ret}"
}

_rnmctl_metrics() {
    local -i ret=1
    local -ar arg_specs=(
        '--socket[The control socket (default\: $RNM_SOCKET, else /run/rnm/rnmd.sock).]:path:'
        '--json[Print the daemon'\''s JSON exactly as it answered.]'
        '--timeout[Give up after this many seconds.]:seconds:'
        '--version[Show the version.]'
        '(-h --help)'{-h,--help}'[Show help information.]'
    )
    _arguments -w -s -S : "${arg_specs[@]}" && ret=0

    return "${ret}"
}

_rnmctl_plugins() {
    local -i ret=1
    local -ar arg_specs=(
        '--version[Show the version.]'
        '(-h --help)'{-h,--help}'[Show help information.]'
        '(-): :->command'
        '(-)*:: :->arg'
    )
    _arguments -w -s -S : "${arg_specs[@]}" && ret=0
    case "${state}" in
    command)
        local -ar subcommands=(
            'list:Loaded plugins, their state and contributions.'
        )
        _describe -V subcommand subcommands && ret=0
        ;;
    arg)
        case "${words[1]}" in
        list)
            "_rnmctl_plugins_${words[1]}" && ret=0
            ;;
        esac
        ;;
    esac

    return "${ret}"
}

_rnmctl_plugins_list() {
    local -i ret=1
    local -ar arg_specs=(
        '--socket[The control socket (default\: $RNM_SOCKET, else /run/rnm/rnmd.sock).]:path:'
        '--json[Print the daemon'\''s JSON exactly as it answered.]'
        '--timeout[Give up after this many seconds.]:seconds:'
        '--version[Show the version.]'
        '(-h --help)'{-h,--help}'[Show help information.]'
    )
    _arguments -w -s -S : "${arg_specs[@]}" && ret=0

    return "${ret}"
}

_rnmctl_help() {
    local -i ret=1
    local -ar arg_specs=(
        '*:subcommands:'
        '--version[Show the version.]'
    )
    _arguments -w -s -S : "${arg_specs[@]}" && ret=0

    return "${ret}"
}

if [[ "${funcstack[1]}" = _rnmctl ]]; then
    _rnmctl "${@}"
else
    compdef _rnmctl rnmctl
fi
