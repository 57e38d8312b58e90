function __rnmctl_should_offer_completions_for_flags_or_options -a expected_commands
    set -l non_repeating_flags_or_options $argv[2..]
    set -l non_repeating_flags_or_options_absent 0
    set -l positional_index 0
    set -l commands
    __rnmctl_parse_tokens
    test "$commands" = "$expected_commands"; and return $non_repeating_flags_or_options_absent
end

function __rnmctl_should_offer_completions_for_positional -a expected_commands positional_index_comparison expected_positional_index
    set -l non_repeating_flags_or_options
    set -l non_repeating_flags_or_options_absent 0
    set -l positional_index 0
    set -l commands
    __rnmctl_parse_tokens
    test "$commands" = "$expected_commands" -a \( "$positional_index" "$positional_index_comparison" "$expected_positional_index" \)
end

function __rnmctl_parse_tokens -S
    set -l unparsed_tokens (__rnmctl_tokens -pc)
    switch $unparsed_tokens[1]
    case 'rnmctl'
        __rnmctl_parse_subcommand 0 'socket=' 'json' 'timeout=' 'version' 'h/help'
        switch $unparsed_tokens[1]
        case 'ping'
            __rnmctl_parse_subcommand 0 'socket=' 'json' 'timeout=' 'version' 'h/help'
        case 'status'
            __rnmctl_parse_subcommand 0 'socket=' 'json' 'timeout=' 'version' 'h/help'
        case 'reload'
            __rnmctl_parse_subcommand 0 'socket=' 'json' 'timeout=' 'version' 'h/help'
        case 'plan'
            __rnmctl_parse_subcommand 0 'socket=' 'json' 'timeout=' 'exit-code' 'version' 'h/help'
        case 'sets'
            __rnmctl_parse_subcommand 0 'socket=' 'json' 'timeout=' 'version' 'h/help'
        case 'set'
            __rnmctl_parse_subcommand 0 'version' 'h/help'
            switch $unparsed_tokens[1]
            case 'show'
                __rnmctl_parse_subcommand 1 'socket=' 'json' 'timeout=' 'version' 'h/help'
            case 'add'
                __rnmctl_parse_subcommand -r 2 'socket=' 'json' 'timeout=' 'version' 'h/help'
            case 'del'
                __rnmctl_parse_subcommand -r 2 'socket=' 'json' 'timeout=' 'version' 'h/help'
            end
        case 'monitor'
            __rnmctl_parse_subcommand 0 'socket=' 'json' 'timeout=' 'version' 'h/help'
        case 'metrics'
            __rnmctl_parse_subcommand 0 'socket=' 'json' 'timeout=' 'version' 'h/help'
        case 'plugins'
            __rnmctl_parse_subcommand 0 'version' 'h/help'
            switch $unparsed_tokens[1]
            case 'list'
                __rnmctl_parse_subcommand 0 'socket=' 'json' 'timeout=' 'version' 'h/help'
            end
        case 'help'
            __rnmctl_parse_subcommand -r 1 'version'
        end
    end
end

function __rnmctl_tokens
    if test (string split -m 1 -f 1 -- . "$FISH_VERSION") -gt 3
        commandline --tokens-raw $argv
    else
        commandline -o $argv
    end
end

function __rnmctl_parse_subcommand -S -a positional_count
    argparse -s r -- $argv
    set -l option_specs $argv[2..]
    set -l is_repeating_positional $_flag_r
    set -el _flag_r
    set -a commands $unparsed_tokens[1]
    set positional_index 0
    while true
        set -e unparsed_tokens[1]
        argparse -sn "$commands" $option_specs -- $unparsed_tokens 2> /dev/null
        set unparsed_tokens $argv
        set positional_index (math $positional_index + 1)
        for non_repeating_flag_or_option in $non_repeating_flags_or_options
            if set -ql "_flag_$(string replace -a - _ -- $non_repeating_flag_or_option)"
                set non_repeating_flags_or_options_absent 1
                break
            end
        end
        test (count $unparsed_tokens) -eq 0 -o \( -z "$is_repeating_positional" -a "$positional_index" -gt "$positional_count" \) && break
    end
end

function __rnmctl_complete_directories
    set -l token (commandline -t)
    string match -- '*/' $token
    set -l subdirs $token*/
    printf %s\n $subdirs
end

function __rnmctl_custom_completion
    set -x SAP_SHELL fish
    set -x SAP_SHELL_VERSION $FISH_VERSION
    set -l tokens (__rnmctl_tokens -p)
    if test -z "$(__rnmctl_tokens -t)"
        set -l index (count (__rnmctl_tokens -pc))
        set tokens $tokens[..$index] \'\' $tokens[(math $index + 1)..]
    end
    command $tokens[1] $argv $tokens
end

complete -c 'rnmctl' -f
complete -c 'rnmctl' -n '__rnmctl_should_offer_completions_for_flags_or_options "rnmctl" socket' -l 'socket' -d 'The control socket (default: $RNM_SOCKET, else /run/rnm/rnmd.sock).' -rfka ''
complete -c 'rnmctl' -n '__rnmctl_should_offer_completions_for_flags_or_options "rnmctl" json' -l 'json' -d 'Print the daemon\'s JSON exactly as it answered.'
complete -c 'rnmctl' -n '__rnmctl_should_offer_completions_for_flags_or_options "rnmctl" timeout' -l 'timeout' -d 'Give up after this many seconds.' -rfka ''
complete -c 'rnmctl' -n '__rnmctl_should_offer_completions_for_flags_or_options "rnmctl" version' -l 'version' -d 'Show the version.'
complete -c 'rnmctl' -n '__rnmctl_should_offer_completions_for_flags_or_options "rnmctl" h help' -s 'h' -l 'help' -d 'Show help information.'
complete -c 'rnmctl' -n '__rnmctl_should_offer_completions_for_positional "rnmctl" -eq 1' -fa 'ping' -d 'Check that rnmd answers.'
complete -c 'rnmctl' -n '__rnmctl_should_offer_completions_for_positional "rnmctl" -eq 1' -fa 'status' -d 'State, interfaces, sets and counters.'
complete -c 'rnmctl' -n '__rnmctl_should_offer_completions_for_positional "rnmctl" -eq 1' -fa 'reload' -d 'Re-read the config, all or nothing (root).'
complete -c 'rnmctl' -n '__rnmctl_should_offer_completions_for_positional "rnmctl" -eq 1' -fa 'plan' -d 'What a reload would change: the config on disk against the live table.'
complete -c 'rnmctl' -n '__rnmctl_should_offer_completions_for_positional "rnmctl" -eq 1' -fa 'sets' -d 'The managed sets: type, flags, element count, owners.'
complete -c 'rnmctl' -n '__rnmctl_should_offer_completions_for_positional "rnmctl" -eq 1' -fa 'set' -d 'Show a set, or add and delete manual entries.'
complete -c 'rnmctl' -n '__rnmctl_should_offer_completions_for_positional "rnmctl" -eq 1' -fa 'monitor' -d 'Follow live events: address changes, commits, resyncs, reloads, errors.'
complete -c 'rnmctl' -n '__rnmctl_should_offer_completions_for_positional "rnmctl" -eq 1' -fa 'metrics' -d 'Counters in Prometheus text format.'
complete -c 'rnmctl' -n '__rnmctl_should_offer_completions_for_positional "rnmctl" -eq 1' -fa 'plugins' -d 'Plugins.'
complete -c 'rnmctl' -n '__rnmctl_should_offer_completions_for_positional "rnmctl" -eq 1' -fa 'help' -d 'Show subcommand help information.'
complete -c 'rnmctl' -n '__rnmctl_should_offer_completions_for_flags_or_options "rnmctl ping" socket' -l 'socket' -d 'The control socket (default: $RNM_SOCKET, else /run/rnm/rnmd.sock).' -rfka ''
complete -c 'rnmctl' -n '__rnmctl_should_offer_completions_for_flags_or_options "rnmctl ping" json' -l 'json' -d 'Print the daemon\'s JSON exactly as it answered.'
complete -c 'rnmctl' -n '__rnmctl_should_offer_completions_for_flags_or_options "rnmctl ping" timeout' -l 'timeout' -d 'Give up after this many seconds.' -rfka ''
complete -c 'rnmctl' -n '__rnmctl_should_offer_completions_for_flags_or_options "rnmctl ping" version' -l 'version' -d 'Show the version.'
complete -c 'rnmctl' -n '__rnmctl_should_offer_completions_for_flags_or_options "rnmctl ping" h help' -s 'h' -l 'help' -d 'Show help information.'
complete -c 'rnmctl' -n '__rnmctl_should_offer_completions_for_flags_or_options "rnmctl status" socket' -l 'socket' -d 'The control socket (default: $RNM_SOCKET, else /run/rnm/rnmd.sock).' -rfka ''
complete -c 'rnmctl' -n '__rnmctl_should_offer_completions_for_flags_or_options "rnmctl status" json' -l 'json' -d 'Print the daemon\'s JSON exactly as it answered.'
complete -c 'rnmctl' -n '__rnmctl_should_offer_completions_for_flags_or_options "rnmctl status" timeout' -l 'timeout' -d 'Give up after this many seconds.' -rfka ''
complete -c 'rnmctl' -n '__rnmctl_should_offer_completions_for_flags_or_options "rnmctl status" version' -l 'version' -d 'Show the version.'
complete -c 'rnmctl' -n '__rnmctl_should_offer_completions_for_flags_or_options "rnmctl status" h help' -s 'h' -l 'help' -d 'Show help information.'
complete -c 'rnmctl' -n '__rnmctl_should_offer_completions_for_flags_or_options "rnmctl reload" socket' -l 'socket' -d 'The control socket (default: $RNM_SOCKET, else /run/rnm/rnmd.sock).' -rfka ''
complete -c 'rnmctl' -n '__rnmctl_should_offer_completions_for_flags_or_options "rnmctl reload" json' -l 'json' -d 'Print the daemon\'s JSON exactly as it answered.'
complete -c 'rnmctl' -n '__rnmctl_should_offer_completions_for_flags_or_options "rnmctl reload" timeout' -l 'timeout' -d 'Give up after this many seconds.' -rfka ''
complete -c 'rnmctl' -n '__rnmctl_should_offer_completions_for_flags_or_options "rnmctl reload" version' -l 'version' -d 'Show the version.'
complete -c 'rnmctl' -n '__rnmctl_should_offer_completions_for_flags_or_options "rnmctl reload" h help' -s 'h' -l 'help' -d 'Show help information.'
complete -c 'rnmctl' -n '__rnmctl_should_offer_completions_for_flags_or_options "rnmctl plan" socket' -l 'socket' -d 'The control socket (default: $RNM_SOCKET, else /run/rnm/rnmd.sock).' -rfka ''
complete -c 'rnmctl' -n '__rnmctl_should_offer_completions_for_flags_or_options "rnmctl plan" json' -l 'json' -d 'Print the daemon\'s JSON exactly as it answered.'
complete -c 'rnmctl' -n '__rnmctl_should_offer_completions_for_flags_or_options "rnmctl plan" timeout' -l 'timeout' -d 'Give up after this many seconds.' -rfka ''
complete -c 'rnmctl' -n '__rnmctl_should_offer_completions_for_flags_or_options "rnmctl plan" exit-code' -l 'exit-code' -d 'Exit with 4 when the table differs from the config (0 when in sync).'
complete -c 'rnmctl' -n '__rnmctl_should_offer_completions_for_flags_or_options "rnmctl plan" version' -l 'version' -d 'Show the version.'
complete -c 'rnmctl' -n '__rnmctl_should_offer_completions_for_flags_or_options "rnmctl plan" h help' -s 'h' -l 'help' -d 'Show help information.'
complete -c 'rnmctl' -n '__rnmctl_should_offer_completions_for_flags_or_options "rnmctl sets" socket' -l 'socket' -d 'The control socket (default: $RNM_SOCKET, else /run/rnm/rnmd.sock).' -rfka ''
complete -c 'rnmctl' -n '__rnmctl_should_offer_completions_for_flags_or_options "rnmctl sets" json' -l 'json' -d 'Print the daemon\'s JSON exactly as it answered.'
complete -c 'rnmctl' -n '__rnmctl_should_offer_completions_for_flags_or_options "rnmctl sets" timeout' -l 'timeout' -d 'Give up after this many seconds.' -rfka ''
complete -c 'rnmctl' -n '__rnmctl_should_offer_completions_for_flags_or_options "rnmctl sets" version' -l 'version' -d 'Show the version.'
complete -c 'rnmctl' -n '__rnmctl_should_offer_completions_for_flags_or_options "rnmctl sets" h help' -s 'h' -l 'help' -d 'Show help information.'
complete -c 'rnmctl' -n '__rnmctl_should_offer_completions_for_flags_or_options "rnmctl set" version' -l 'version' -d 'Show the version.'
complete -c 'rnmctl' -n '__rnmctl_should_offer_completions_for_flags_or_options "rnmctl set" h help' -s 'h' -l 'help' -d 'Show help information.'
complete -c 'rnmctl' -n '__rnmctl_should_offer_completions_for_positional "rnmctl set" -eq 1' -fa 'show' -d 'A set\'s elements with owners and remaining timeouts.'
complete -c 'rnmctl' -n '__rnmctl_should_offer_completions_for_positional "rnmctl set" -eq 1' -fa 'add' -d 'Add manual entries to a declared set (root).'
complete -c 'rnmctl' -n '__rnmctl_should_offer_completions_for_positional "rnmctl set" -eq 1' -fa 'del' -d 'Delete manual entries from a set (root).'
complete -c 'rnmctl' -n '__rnmctl_should_offer_completions_for_flags_or_options "rnmctl set show" socket' -l 'socket' -d 'The control socket (default: $RNM_SOCKET, else /run/rnm/rnmd.sock).' -rfka ''
complete -c 'rnmctl' -n '__rnmctl_should_offer_completions_for_flags_or_options "rnmctl set show" json' -l 'json' -d 'Print the daemon\'s JSON exactly as it answered.'
complete -c 'rnmctl' -n '__rnmctl_should_offer_completions_for_flags_or_options "rnmctl set show" timeout' -l 'timeout' -d 'Give up after this many seconds.' -rfka ''
complete -c 'rnmctl' -n '__rnmctl_should_offer_completions_for_flags_or_options "rnmctl set show" version' -l 'version' -d 'Show the version.'
complete -c 'rnmctl' -n '__rnmctl_should_offer_completions_for_flags_or_options "rnmctl set show" h help' -s 'h' -l 'help' -d 'Show help information.'
complete -c 'rnmctl' -n '__rnmctl_should_offer_completions_for_flags_or_options "rnmctl set add" socket' -l 'socket' -d 'The control socket (default: $RNM_SOCKET, else /run/rnm/rnmd.sock).' -rfka ''
complete -c 'rnmctl' -n '__rnmctl_should_offer_completions_for_flags_or_options "rnmctl set add" json' -l 'json' -d 'Print the daemon\'s JSON exactly as it answered.'
complete -c 'rnmctl' -n '__rnmctl_should_offer_completions_for_flags_or_options "rnmctl set add" timeout' -l 'timeout' -d 'Give up after this many seconds.' -rfka ''
complete -c 'rnmctl' -n '__rnmctl_should_offer_completions_for_flags_or_options "rnmctl set add" version' -l 'version' -d 'Show the version.'
complete -c 'rnmctl' -n '__rnmctl_should_offer_completions_for_flags_or_options "rnmctl set add" h help' -s 'h' -l 'help' -d 'Show help information.'
complete -c 'rnmctl' -n '__rnmctl_should_offer_completions_for_flags_or_options "rnmctl set del" socket' -l 'socket' -d 'The control socket (default: $RNM_SOCKET, else /run/rnm/rnmd.sock).' -rfka ''
complete -c 'rnmctl' -n '__rnmctl_should_offer_completions_for_flags_or_options "rnmctl set del" json' -l 'json' -d 'Print the daemon\'s JSON exactly as it answered.'
complete -c 'rnmctl' -n '__rnmctl_should_offer_completions_for_flags_or_options "rnmctl set del" timeout' -l 'timeout' -d 'Give up after this many seconds.' -rfka ''
complete -c 'rnmctl' -n '__rnmctl_should_offer_completions_for_flags_or_options "rnmctl set del" version' -l 'version' -d 'Show the version.'
complete -c 'rnmctl' -n '__rnmctl_should_offer_completions_for_flags_or_options "rnmctl set del" h help' -s 'h' -l 'help' -d 'Show help information.'
complete -c 'rnmctl' -n '__rnmctl_should_offer_completions_for_flags_or_options "rnmctl monitor" socket' -l 'socket' -d 'The control socket (default: $RNM_SOCKET, else /run/rnm/rnmd.sock).' -rfka ''
complete -c 'rnmctl' -n '__rnmctl_should_offer_completions_for_flags_or_options "rnmctl monitor" json' -l 'json' -d 'Print the daemon\'s JSON exactly as it answered.'
complete -c 'rnmctl' -n '__rnmctl_should_offer_completions_for_flags_or_options "rnmctl monitor" timeout' -l 'timeout' -d 'Give up after this many seconds.' -rfka ''
complete -c 'rnmctl' -n '__rnmctl_should_offer_completions_for_flags_or_options "rnmctl monitor" version' -l 'version' -d 'Show the version.'
complete -c 'rnmctl' -n '__rnmctl_should_offer_completions_for_flags_or_options "rnmctl monitor" h help' -s 'h' -l 'help' -d 'Show help information.'
complete -c 'rnmctl' -n '__rnmctl_should_offer_completions_for_flags_or_options "rnmctl metrics" socket' -l 'socket' -d 'The control socket (default: $RNM_SOCKET, else /run/rnm/rnmd.sock).' -rfka ''
complete -c 'rnmctl' -n '__rnmctl_should_offer_completions_for_flags_or_options "rnmctl metrics" json' -l 'json' -d 'Print the daemon\'s JSON exactly as it answered.'
complete -c 'rnmctl' -n '__rnmctl_should_offer_completions_for_flags_or_options "rnmctl metrics" timeout' -l 'timeout' -d 'Give up after this many seconds.' -rfka ''
complete -c 'rnmctl' -n '__rnmctl_should_offer_completions_for_flags_or_options "rnmctl metrics" version' -l 'version' -d 'Show the version.'
complete -c 'rnmctl' -n '__rnmctl_should_offer_completions_for_flags_or_options "rnmctl metrics" h help' -s 'h' -l 'help' -d 'Show help information.'
complete -c 'rnmctl' -n '__rnmctl_should_offer_completions_for_flags_or_options "rnmctl plugins" version' -l 'version' -d 'Show the version.'
complete -c 'rnmctl' -n '__rnmctl_should_offer_completions_for_flags_or_options "rnmctl plugins" h help' -s 'h' -l 'help' -d 'Show help information.'
complete -c 'rnmctl' -n '__rnmctl_should_offer_completions_for_positional "rnmctl plugins" -eq 1' -fa 'list' -d 'Loaded plugins, their state and contributions.'
complete -c 'rnmctl' -n '__rnmctl_should_offer_completions_for_flags_or_options "rnmctl plugins list" socket' -l 'socket' -d 'The control socket (default: $RNM_SOCKET, else /run/rnm/rnmd.sock).' -rfka ''
complete -c 'rnmctl' -n '__rnmctl_should_offer_completions_for_flags_or_options "rnmctl plugins list" json' -l 'json' -d 'Print the daemon\'s JSON exactly as it answered.'
complete -c 'rnmctl' -n '__rnmctl_should_offer_completions_for_flags_or_options "rnmctl plugins list" timeout' -l 'timeout' -d 'Give up after this many seconds.' -rfka ''
complete -c 'rnmctl' -n '__rnmctl_should_offer_completions_for_flags_or_options "rnmctl plugins list" version' -l 'version' -d 'Show the version.'
complete -c 'rnmctl' -n '__rnmctl_should_offer_completions_for_flags_or_options "rnmctl plugins list" h help' -s 'h' -l 'help' -d 'Show help information.'
complete -c 'rnmctl' -n '__rnmctl_should_offer_completions_for_flags_or_options "rnmctl help" version' -l 'version' -d 'Show the version.'
