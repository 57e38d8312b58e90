/// A YAML document as a plain tree with source marks. Built by the libyaml binding (RNMYAML) with aliases
/// already expanded under a cap; the config decoder walks it so every error can name its line and column.
public struct YAMLNode: Equatable, Sendable {
    public enum Kind: Equatable, Sendable {
        /// `plain` is false for quoted and block scalars: `"true"` is a string, `true` a boolean.
        case scalar(String, plain: Bool)
        case sequence([YAMLNode])
        /// Pairs in document order; duplicates are kept so the decoder can report them.
        case mapping([YAMLPair])
    }

    public var kind: Kind
    public var mark: SourceMark

    public init(_ kind: Kind, mark: SourceMark) {
        self.kind = kind
        self.mark = mark
    }

    /// `~`, `null` or an empty plain scalar.
    public var isNull: Bool {
        if case .scalar(let s, plain: true) = kind {
            return s.isEmpty || s == "~" || s == "null" || s == "Null" || s == "NULL"
        }
        return false
    }

    /// What the node is, for error messages: "a mapping", "a list", "the string \"x\"", …
    public var kindDescription: String {
        switch kind {
        case .mapping: return "a mapping"
        case .sequence: return "a list"
        case .scalar(let s, let plain):
            if isNull { return "nothing (null)" }
            let shown = s.count > 40 ? String(s.prefix(40)) + "…" : s
            return plain ? "\(Self.quoted(shown))" : "the string \(Self.quoted(shown))"
        }
    }

    /// Double-quoted, with control characters escaped, so hostile input cannot break a log line.
    public static func quoted(_ s: String) -> String { "\"" + escaped(s, quotes: true) + "\"" }

    /// Control characters escaped (`\n`, `\t`, `\xHH`), and with `quotes` also `"` and `\`; at most
    /// `limit` characters are kept (then `…`).
    public static func escaped(_ s: String, quotes: Bool = false, limit: Int = .max) -> String {
        var out = ""
        var n = 0
        for u in s.unicodeScalars {
            n += 1
            if n > limit {
                out += "…"
                break
            }
            switch u {
            case "\"" where quotes: out += "\\\""
            case "\\" where quotes: out += "\\\\"
            case "\n": out += "\\n"
            case "\t": out += "\\t"
            default:
                if u.value < 0x20 || u.value == 0x7F {
                    let hex = String(u.value, radix: 16)
                    out += "\\x" + (hex.count < 2 ? "0" + hex : hex)
                } else {
                    out.unicodeScalars.append(u)
                }
            }
        }
        return out
    }
}

public struct YAMLPair: Equatable, Sendable {
    public var key: YAMLNode
    public var value: YAMLNode

    public init(key: YAMLNode, value: YAMLNode) {
        self.key = key
        self.value = value
    }
}
