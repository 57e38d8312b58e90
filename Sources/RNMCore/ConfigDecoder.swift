/// Decodes and validates a `Config` from a YAML node tree. Every problem names file, line, column and the
/// field path; unknown and duplicate keys are errors; decoding goes on after a problem to report the rest.
public enum ConfigDecoder {
    public static func decode(_ root: YAMLNode?, file: String) throws(ConfigError) -> Config {
        let r = NodeReader(file: file)
        let config = decodeRoot(root, r)
        if !r.issues.isEmpty {
            // In file order, whichever level of the tree found them.
            throw ConfigError(r.issues.enumerated().sorted {
                ($0.element.mark.line, $0.element.mark.column, $0.offset) < ($1.element.mark.line, $1.element.mark.column, $1.offset)
            }.map(\.element))
        }
        return config!
    }

    private static func decodeRoot(_ root: YAMLNode?, _ r: NodeReader) -> Config? {
        guard let root, !root.isNull else {
            r.fail(root?.mark ?? SourceMark(line: 1, column: 1), "",
                "the file is empty; expected a mapping with at least `interfaces:`")
            return nil
        }
        guard let fields = r.fields(
            root, path: "",
            known: ["table", "interfaces", "address_policy"])
        else { return nil }

        var config = Config()
        if let t = fields["table"] {
            if let name = r.string(t, path: "table") {
                if let p = Names.tableNameProblem(name) {
                    r.fail(t.mark, "table", "\(p), got \(YAMLNode.quoted(name))")
                } else {
                    config.table = name
                }
            }
        }
        if let list = fields["interfaces"] {
            config.interfaces = decodeInterfaces(list, r)
        } else {
            r.fail(root.mark, "", "missing required field `interfaces`")
        }
        if let p = fields["address_policy"] {
            config.addressPolicy = decodePolicy(p, r)
        }
        return config
    }

    private static func decodeInterfaces(_ node: YAMLNode, _ r: NodeReader) -> [InterfaceConfig] {
        guard let items = r.sequence(node, path: "interfaces") else { return [] }
        var out: [InterfaceConfig] = []
        var seen: [String: SourceMark] = [:]
        for (i, item) in items.enumerated() {
            let path = "interfaces[\(i)]"
            guard let f = r.fields(
                item, path: path,
                known: ["name", "zone", "dhcp", "addresses"],
                aliases: ["nftables_zone": "zone", "address": "addresses"])
            else { continue }
            var iface = InterfaceConfig(name: "", zone: "")
            var ok = true
            if let n = f["name"] {
                if let name = r.string(n, path: path + ".name") {
                    if let p = Names.interfaceNameProblem(name) {
                        r.fail(n.mark, path + ".name", "\(p): \(YAMLNode.quoted(name))")
                        ok = false
                    } else if let first = seen[name] {
                        r.fail(n.mark, path + ".name", "interface \(YAMLNode.quoted(name)) is listed twice (first at \(first)); an interface belongs to one zone")
                        ok = false
                    } else {
                        seen[name] = n.mark
                        iface.name = name
                    }
                } else { ok = false }
            } else {
                r.fail(item.mark, path, "missing required field `name`")
                ok = false
            }
            if let z = f["zone"] {
                let zpath = path + "." + (f.spelling["zone"] ?? "zone")
                if let zone = r.string(z, path: zpath) {
                    if let p = Names.zoneNameProblem(zone) {
                        r.fail(z.mark, zpath, "\(p), got \(YAMLNode.quoted(zone))")
                        ok = false
                    } else {
                        iface.zone = zone
                    }
                } else { ok = false }
            } else {
                r.fail(item.mark, path, "missing required field `zone`")
                ok = false
            }
            if let d = f["dhcp"], let b = r.bool(d, path: path + ".dhcp") { iface.dhcp = b }
            if let a = f["addresses"] {
                let apath = path + "." + (f.spelling["addresses"] ?? "addresses")
                var list: [YAMLNode]? = nil
                var single = false
                if case .sequence(let items) = a.kind {
                    list = items
                } else if f.spelling["addresses"] == "address" {
                    list = [a]  // the earlier design's spelling: one address as a scalar
                    single = true
                } else {
                    r.fail(a.mark, apath, "expected a list of addresses (e.g. [192.168.1.1/24]), got \(a.kindDescription)")
                    ok = false
                }
                var seenAddr: Set<IPPrefix> = []
                for (k, el) in (list ?? []).enumerated() {
                    let epath = single ? apath : "\(apath)[\(k)]"
                    guard let p = r.prefix(el, path: epath) else {
                        ok = false
                        continue
                    }
                    if !seenAddr.insert(p).inserted {
                        r.fail(el.mark, epath, "address \(p) is listed twice")
                        ok = false
                        continue
                    }
                    iface.addresses.append(p)
                }
            }
            if ok { out.append(iface) }
        }
        return out
    }

    private static func decodePolicy(_ node: YAMLNode, _ r: NodeReader) -> AddressPolicy {
        var policy = AddressPolicy()
        guard let f = r.fields(node, path: "address_policy", known: ["link_local", "deprecated", "temporary"])
        else { return policy }
        if let n = f["link_local"], let b = r.bool(n, path: "address_policy.link_local") { policy.linkLocal = b }
        if let n = f["deprecated"], let b = r.bool(n, path: "address_policy.deprecated") { policy.deprecated = b }
        if let n = f["temporary"], let b = r.bool(n, path: "address_policy.temporary") { policy.temporary = b }
        return policy
    }
}

/// The fields of one mapping, by canonical key. `spelling` records which alias the file used.
struct Fields {
    var values: [String: YAMLNode] = [:]
    var spelling: [String: String] = [:]

    subscript(key: String) -> YAMLNode? { values[key] }
}

/// Collects issues while reading typed values out of nodes.
final class NodeReader {
    let file: String
    private(set) var issues: [ConfigIssue] = []

    init(file: String) { self.file = file }

    func fail(_ mark: SourceMark, _ path: String, _ message: String) {
        issues.append(ConfigIssue(file: file, mark: mark, path: path, message: message))
    }

    /// Reads a mapping's keys against the known set. Unknown keys, duplicate keys and a key given under both
    /// its name and an alias are reported; the first occurrence wins.
    func fields(_ node: YAMLNode, path: String, known: [String], aliases: [String: String] = [:]) -> Fields? {
        guard case .mapping(let pairs) = node.kind else {
            if node.isNull { return Fields() }
            fail(node.mark, path, "expected a mapping, got \(node.kindDescription)")
            return nil
        }
        var out = Fields()
        var firstSeen: [String: SourceMark] = [:]
        for pair in pairs {
            guard case .scalar(let key, _) = pair.key.kind else {
                fail(pair.key.mark, path, "expected a plain key, got \(pair.key.kindDescription)")
                continue
            }
            let here = path.isEmpty ? key : path + "." + key
            if let first = firstSeen[key] {
                fail(pair.key.mark, here, "duplicate key `\(key)` (first at \(first))")
                continue
            }
            firstSeen[key] = pair.key.mark
            let canonical: String
            if known.contains(key) {
                canonical = key
            } else if let c = aliases[key] {
                canonical = c
            } else {
                var msg = "unknown key `\(key)`"
                if let s = Self.suggestion(for: key, among: known + aliases.keys) { msg += "; did you mean `\(s)`?" }
                msg += " (known: " + known.joined(separator: ", ") + ")"
                fail(pair.key.mark, here, msg)
                continue
            }
            if let other = out.spelling[canonical] {
                fail(pair.key.mark, here, "`\(key)` and `\(other)` are the same field; give only one")
                continue
            }
            out.values[canonical] = pair.value
            out.spelling[canonical] = key
        }
        return out
    }

    func string(_ node: YAMLNode, path: String) -> String? {
        guard case .scalar(let s, _) = node.kind, !node.isNull else {
            fail(node.mark, path, "expected a string, got \(node.kindDescription)")
            return nil
        }
        return s
    }

    func bool(_ node: YAMLNode, path: String) -> Bool? {
        if case .scalar(let s, plain: true) = node.kind {
            switch s {
            case "true", "True", "TRUE": return true
            case "false", "False", "FALSE": return false
            default: break
            }
        }
        fail(node.mark, path, "expected true or false, got \(node.kindDescription)")
        return nil
    }

    func sequence(_ node: YAMLNode, path: String) -> [YAMLNode]? {
        guard case .sequence(let items) = node.kind else {
            fail(node.mark, path, "expected a list, got \(node.kindDescription)")
            return nil
        }
        return items
    }

    func prefix(_ node: YAMLNode, path: String) -> IPPrefix? {
        guard let s = string(node, path: path) else { return nil }
        guard let p = IPPrefix(s) else {
            fail(node.mark, path, "expected an IPv4 or IPv6 address with an optional /prefix-length, got \(YAMLNode.quoted(s))")
            return nil
        }
        return p
    }

    /// The closest known key within edit distance 2, for "did you mean".
    static func suggestion(for key: String, among known: [String]) -> String? {
        let a = Array(key.utf8)
        var best: (String, Int)? = nil
        for k in known {
            let d = editDistance(a, Array(k.utf8))
            if d <= 2, d < (best?.1 ?? .max) { best = (k, d) }
        }
        return best?.0
    }

    private static func editDistance(_ a: [UInt8], _ b: [UInt8]) -> Int {
        if a.isEmpty { return b.count }
        if b.isEmpty { return a.count }
        var prev = Array(0...b.count)
        var cur = [Int](repeating: 0, count: b.count + 1)
        for i in 1...a.count {
            cur[0] = i
            for j in 1...b.count {
                cur[j] = min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1))
            }
            swap(&prev, &cur)
        }
        return prev[b.count]
    }
}
