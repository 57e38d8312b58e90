/// Decodes and validates a `Config` from a YAML node tree. Every problem names file, line, column and the
/// field path; unknown and duplicate keys are errors; decoding goes on after a problem to report the rest.
public enum ConfigDecoder {
    /// `directory`: what relative `rules:` paths are resolved against (absolute; default: `file`'s directory).
    public static func decode(_ root: YAMLNode?, file: String, directory: String? = nil) throws(ConfigError) -> Config {
        let r = NodeReader(file: file)
        let config = decodeRoot(root, r, directory: directory ?? file.lastIndex(of: "/").map { String(file[..<$0]) } ?? "")
        if !r.issues.isEmpty {
            // In file order, whichever level of the tree found them.
            throw ConfigError(r.issues.enumerated().sorted {
                ($0.element.mark.line, $0.element.mark.column, $0.offset) < ($1.element.mark.line, $1.element.mark.column, $1.offset)
            }.map(\.element))
        }
        return config!
    }

    private static func decodeRoot(_ root: YAMLNode?, _ r: NodeReader, directory dir: String) -> Config? {
        guard let root, !root.isNull else {
            r.fail(root?.mark ?? SourceMark(line: 1, column: 1), "",
                "the file is empty; expected a mapping with at least `interfaces:`")
            return nil
        }
        guard let fields = r.fields(
            root, path: "",
            known: [
                "table", "interfaces", "address_policy", "sets", "control", "state_dir", "rules", "defines",
                "audit_interval", "drift", "plugin_dir", "plugins", "routes", "forwarding", "masquerade", "forwards",
            ])
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
        if let c = fields["control"] { config.control = decodeControl(c, r) }
        if let d = fields["state_dir"], let dir = r.absolutePath(d, path: "state_dir") { config.stateDir = dir }
        if let sets = fields["sets"] { config.sets = decodeSets(sets, zones: Set(config.zones), r) }
        if let rules = fields["rules"], let list = r.sequence(rules, path: "rules") {
            // Relative to the config file's directory (the loader passes it absolute).
            var seen: [String: SourceMark] = [:]
            for (i, item) in list.enumerated() {
                guard let given = r.string(item, path: "rules[\(i)]") else { continue }
                guard !given.isEmpty, !given.utf8.contains(0), !given.contains("\n") else {
                    r.fail(item.mark, "rules[\(i)]", "expected a file path")
                    continue
                }
                let path = given.hasPrefix("/") ? "".replacingDotSlash(with: given)
                    : dir.hasPrefix("/") ? dir.replacingDotSlash(with: given)
                    : (dir.isEmpty ? given : dir + "/" + given)
                if let first = seen[path] {
                    r.fail(item.mark, "rules[\(i)]", "\(YAMLNode.quoted(given)) is listed twice (first at \(first))")
                    continue
                }
                seen[path] = item.mark
                config.rules.append(RuleTemplate(given: given, path: path, mark: item.mark))
            }
        }
        if let defines = fields["defines"] {
            if case .mapping(let pairs) = defines.kind {
                var seen: [String: SourceMark] = [:]
                let zoneDefines = Set(config.zones.map { Desired.ifacesSetName($0) })
                for pair in pairs {
                    guard case .scalar(let name, _) = pair.key.kind else {
                        r.fail(pair.key.mark, "defines", "expected a name")
                        continue
                    }
                    let path = "defines.\(name)"
                    if let first = seen[name] {
                        r.fail(pair.key.mark, path, "duplicate key `\(name)` (first at \(first))")
                        continue
                    }
                    seen[name] = pair.key.mark
                    let valid = name.utf8.first.map { ($0 >= 0x61 && $0 <= 0x7A) || ($0 >= 0x41 && $0 <= 0x5A) || $0 == 0x5F } == true
                        && name.utf8.allSatisfy { ($0 >= 0x61 && $0 <= 0x7A) || ($0 >= 0x41 && $0 <= 0x5A) || ($0 >= 0x30 && $0 <= 0x39) || $0 == 0x5F }
                        && name.utf8.count <= 64
                    guard valid else {
                        r.fail(pair.key.mark, path, "a define name is [A-Za-z_][A-Za-z0-9_]*, at most 64 characters")
                        continue
                    }
                    if zoneDefines.contains(name) {
                        r.fail(pair.key.mark, path, "`\(name)` is defined by rnm (the interface names of zone \(name.dropLast(7)))")
                        continue
                    }
                    guard case .scalar(let value, _) = pair.value.kind, !pair.value.isNull else {
                        r.fail(pair.value.mark, path, "expected nft text such as 22 or \"{ 10.0.0.0/8, 192.168.0.0/16 }\", got \(pair.value.kindDescription)")
                        continue
                    }
                    guard !value.contains("\n"), !value.contains("\r"), !value.unicodeScalars.contains(where: { $0.value < 0x20 }) else {
                        r.fail(pair.value.mark, path, "a define is one line of nft text")
                        continue
                    }
                    config.defines.append(Define(name: name, value: value))
                }
            } else if !defines.isNull {
                r.fail(defines.mark, "defines", "expected a mapping of name: nft text, got \(defines.kindDescription)")
            }
        }
        if let a = fields["audit_interval"] {
            if case .scalar("0", plain: true) = a.kind {
                config.auditIntervalMs = 0
            } else if let v = r.string(a, path: "audit_interval") {
                switch Durations.parse(v) {
                case .success(let ms): config.auditIntervalMs = ms
                case .failure(let e): r.fail(a.mark, "audit_interval", "\(e.description); 0 turns the audit off")
                }
            }
        }
        if let d = fields["drift"], let v = r.string(d, path: "drift") {
            switch v {
            case "repair": config.driftRepair = true
            case "report": config.driftRepair = false
            default: r.fail(d.mark, "drift", "expected repair or report, got \(YAMLNode.quoted(v))")
            }
        }
        if let f = fields["forwarding"], let b = r.bool(f, path: "forwarding") { config.forwarding = b }
        if let routes = fields["routes"] { config.routes = decodeRoutes(routes, r) }
        if let m = fields["masquerade"] { config.masquerade = decodeMasquerade(m, zones: config.zones, r) }
        if let f = fields["forwards"] { config.forwards = decodeForwards(f, config: config, r) }
        if let d = fields["plugin_dir"], let path = r.absolutePath(d, path: "plugin_dir") {
            config.pluginDir = path.count > 1 && path.hasSuffix("/") ? String(path.dropLast()) : path
        }
        if let p = fields["plugins"] {
            config.plugins = decodePlugins(p, declared: config.sets, pluginDir: config.pluginDir, directory: dir, r)
        }
        return config
    }

    private static func decodeRoutes(_ node: YAMLNode, _ r: NodeReader) -> [RouteConfig] {
        if node.isNull { return [] }
        guard let items = r.sequence(node, path: "routes") else { return [] }
        var out: [RouteConfig] = []
        var seen: [String: SourceMark] = [:]
        for (i, item) in items.enumerated() {
            let at = "routes[\(i)]"
            guard let f = r.fields(item, path: at, known: ["to", "via", "dev", "metric", "table"]) else { continue }
            var ok = true
            var via: IPAddress? = nil
            if let v = f["via"], let text = r.string(v, path: "\(at).via") {
                if let a = IPAddress(text) { via = a } else {
                    r.fail(v.mark, "\(at).via", "expected a gateway address, got \(YAMLNode.quoted(text))")
                    ok = false
                }
            }
            var to: IPPrefix? = nil
            if let t = f["to"], let text = r.string(t, path: "\(at).to") {
                if text == "default" {
                    if let via {
                        to = IPPrefix(address: via.family == .v4 ? .v4(IPv4Address(0)) : .v6(IPv6Address(high: 0, low: 0)), length: 0)
                    } else {
                        r.fail(t.mark, "\(at).to", "a default route needs `via` (it gives the family), or write 0.0.0.0/0 or ::/0 with `dev`")
                        ok = false
                    }
                } else if let p = IPPrefix(text) {
                    if p.network != p {
                        r.fail(t.mark, "\(at).to", "\(p) has host bits set; the network is \(p.network)")
                        ok = false
                    } else {
                        to = p
                    }
                } else {
                    r.fail(t.mark, "\(at).to", "expected a destination prefix (e.g. 10.20.0.0/16) or `default`, got \(YAMLNode.quoted(text))")
                    ok = false
                }
            } else if f["to"] == nil {
                r.fail(item.mark, at, "missing required field `to`")
                ok = false
            }
            if let to, let via, via.family != to.address.family, let v = f["via"] {
                r.fail(v.mark, "\(at).via", "\(via) is \(via.family == .v4 ? "IPv4" : "IPv6"); the route to \(to) is \(to.address.family == .v4 ? "IPv4" : "IPv6")")
                ok = false
            }
            var dev: String? = nil
            if let d = f["dev"], let name = r.string(d, path: "\(at).dev") {
                if let p = Names.interfaceNameProblem(name) {
                    r.fail(d.mark, "\(at).dev", "\(p): \(YAMLNode.quoted(name))")
                    ok = false
                } else {
                    dev = name
                }
            }
            if via == nil && dev == nil && f["to"] != nil {
                r.fail(item.mark, at, "a route needs `via`, `dev` or both")
                ok = false
            }
            var metric: UInt32? = nil
            if let m = f["metric"] {
                if let v = r.integer(m, path: "\(at).metric", in: 0...Int(UInt32.max), what: "a metric") { metric = UInt32(v) } else { ok = false }
            }
            var table: UInt32 = 254
            if let t = f["table"] {
                if case .scalar("main", _) = t.kind {
                    table = 254
                } else if let v = r.integer(t, path: "\(at).table", in: 1...Int(UInt32.max), what: "a routing table (`main` or 1–4294967295, not 253–255)") {
                    if (253...255).contains(v) {
                        r.fail(t.mark, "\(at).table", "table \(v) is reserved (253 default, 254 main, 255 local); write `main` for 254")
                        ok = false
                    } else {
                        table = UInt32(v)
                    }
                } else { ok = false }
            }
            guard ok, let to else { continue }
            // The kernel stores an IPv6 route's metric 0 as 1024: the same route.
            let effective = to.address.family == .v6 && (metric ?? 0) == 0 ? 1024 : metric ?? 0
            let identity = "\(to) table \(table) metric \(effective)"
            if let first = seen[identity] {
                r.fail(item.mark, at, "route to \(to) in table \(table) with metric \(effective) is listed twice (first at \(first))"
                    + (to.address.family == .v6 && effective == 1024 ? " (an IPv6 route's metric 0 is 1024)" : ""))
                continue
            }
            seen[identity] = item.mark
            out.append(RouteConfig(to: to, via: via, dev: dev, metric: metric, table: table))
        }
        return out
    }

    private static func decodeMasquerade(_ node: YAMLNode, zones: [String], _ r: NodeReader) -> [MasqueradeConfig] {
        if node.isNull { return [] }
        guard let items = r.sequence(node, path: "masquerade") else { return [] }
        var out: [MasqueradeConfig] = []
        for (i, item) in items.enumerated() {
            let at = "masquerade[\(i)]"
            guard let f = r.fields(item, path: at, known: ["from", "to"]) else { continue }
            var pair: [String] = []
            for key in ["from", "to"] {
                guard let n = f[key] else {
                    r.fail(item.mark, at, "missing required field `\(key)`")
                    continue
                }
                guard let z = r.string(n, path: "\(at).\(key)") else { continue }
                guard zones.contains(z) else {
                    r.fail(n.mark, "\(at).\(key)", "\(YAMLNode.quoted(z)) is not a zone (zones: \(zones.joined(separator: ", ")))")
                    continue
                }
                pair.append(z)
            }
            guard pair.count == 2 else { continue }
            if pair[0] == pair[1] {
                r.fail(item.mark, at, "`from` and `to` are the same zone")
                continue
            }
            let m = MasqueradeConfig(from: pair[0], to: pair[1])
            if out.contains(m) {
                r.fail(item.mark, at, "masquerade from \(m.from) to \(m.to) is listed twice")
                continue
            }
            out.append(m)
        }
        return out
    }

    private static func decodeForwards(_ node: YAMLNode, config: Config, _ r: NodeReader) -> [ForwardConfig] {
        if node.isNull { return [] }
        guard let items = r.sequence(node, path: "forwards") else { return [] }
        var out: [(ForwardConfig, SourceMark)] = []
        let zones = config.zones
        for (i, item) in items.enumerated() {
            let at = "forwards[\(i)]"
            guard let f = r.fields(item, path: at, known: ["zone", "proto", "port", "to", "to_port", "hairpin"]) else { continue }
            var ok = true
            var zone = ""
            if let z = f["zone"], let name = r.string(z, path: "\(at).zone") {
                if zones.contains(name) { zone = name } else {
                    r.fail(z.mark, "\(at).zone", "\(YAMLNode.quoted(name)) is not a zone (zones: \(zones.joined(separator: ", ")))")
                    ok = false
                }
            } else {
                if f["zone"] == nil { r.fail(item.mark, at, "missing required field `zone`") }
                ok = false
            }
            var proto = ForwardConfig.Proto.tcp
            if let p = f["proto"], let text = r.string(p, path: "\(at).proto") {
                if let v = ForwardConfig.Proto(rawValue: text) { proto = v } else {
                    r.fail(p.mark, "\(at).proto", "expected tcp or udp, got \(YAMLNode.quoted(text))")
                    ok = false
                }
            }
            var port: ClosedRange<UInt16>? = nil
            if let p = f["port"] { port = r.portRange(p, path: "\(at).port") } else { r.fail(item.mark, at, "missing required field `port`") }
            if port == nil { ok = false }
            var toPort: ClosedRange<UInt16>? = nil
            if let p = f["to_port"] {
                toPort = r.portRange(p, path: "\(at).to_port")
                if toPort == nil { ok = false }
                if let toPort, let port, toPort.count != port.count {
                    r.fail(p.mark, "\(at).to_port", "\(toPort.count) ports for the \(port.count) of `port`; the ranges must be the same length")
                    ok = false
                }
            }
            var to: IPAddress? = nil
            if let t = f["to"], let text = r.string(t, path: "\(at).to") {
                if let a = IPAddress(text) {
                    // The target must be on a network one of the zones' static addresses covers.
                    let inside = config.interfaces.contains { iface in
                        iface.zone != zone && iface.addresses.contains { p in
                            p.address.family == a.family && IPPrefix(address: a, length: p.length).network == p.network
                        }
                    }
                    if !inside {
                        r.fail(t.mark, "\(at).to", "\(a) is outside every zone's networks (no static address of another zone's interface covers it)")
                        ok = false
                    } else {
                        to = a
                    }
                } else {
                    r.fail(t.mark, "\(at).to", "expected the address of the host to forward to, got \(YAMLNode.quoted(text))")
                    ok = false
                }
            } else {
                if f["to"] == nil { r.fail(item.mark, at, "missing required field `to`") }
                ok = false
            }
            var hairpin = false
            if let h = f["hairpin"], let b = r.bool(h, path: "\(at).hairpin") { hairpin = b }
            guard ok, let port, let to else { continue }
            let fw = ForwardConfig(zone: zone, proto: proto, port: port, to: to, toPort: toPort, hairpin: hairpin)
            if let (other, mark) = out.first(where: { $0.0.zone == zone && $0.0.proto == proto && $0.0.port.overlaps(port) }) {
                r.fail(f["port"]!.mark, "\(at).port", "\(proto.rawValue) port\(port.count > 1 ? "s" : "") \(Self.ports(port)) on zone \(zone) overlap\(port.count > 1 ? "" : "s") the forward at \(mark) (\(Self.ports(other.port)))")
                continue
            }
            out.append((fw, item.mark))
        }
        return out.map(\.0)
    }

    static func ports(_ r: ClosedRange<UInt16>) -> String { r.count == 1 ? "\(r.lowerBound)" : "\(r.lowerBound)-\(r.upperBound)" }

    private static func decodePlugins(
        _ node: YAMLNode, declared: [DeclaredSet], pluginDir: String, directory dir: String, _ r: NodeReader
    ) -> [PluginConfig] {
        if node.isNull { return [] }
        guard let list = r.sequence(node, path: "plugins") else { return [] }
        var out: [PluginConfig] = []
        var seen: [String: SourceMark] = [:]
        let declaredNames = Set(declared.map(\.name))
        for (i, item) in list.enumerated() {
            let at = "plugins[\(i)]"
            guard let f = r.fields(item, path: at, known: ["name", "path", "enabled", "sets", "config"]) else { continue }
            guard let nameNode = f["name"] else {
                r.fail(item.mark, at, "missing required field `name`")
                continue
            }
            guard let name = r.string(nameNode, path: "\(at).name") else { continue }
            if let problem = Names.pluginNameProblem(name) {
                r.fail(nameNode.mark, "\(at).name", "\(problem), got \(YAMLNode.quoted(name))")
                continue
            }
            if let first = seen[name] {
                r.fail(nameNode.mark, "\(at).name", "duplicate plugin name \(YAMLNode.quoted(name)) (first at \(first))")
                continue
            }
            seen[name] = nameNode.mark
            var plugin = PluginConfig(name: name, path: pluginDir + "/" + name + ".so")
            if let p = f["path"], let given = r.string(p, path: "\(at).path") {
                if given.isEmpty || given.utf8.contains(0) || given.contains("\n") || given.hasSuffix("/") {
                    r.fail(p.mark, "\(at).path", "expected the path of a .so file, got \(YAMLNode.quoted(given))")
                } else {
                    plugin.path = given.hasPrefix("/") ? "".replacingDotSlash(with: given)
                        : dir.hasPrefix("/") ? dir.replacingDotSlash(with: given) : (dir.isEmpty ? given : dir + "/" + given)
                }
            }
            if let e = f["enabled"], let b = r.bool(e, path: "\(at).enabled") { plugin.enabled = b }
            if let s = f["sets"], !s.isNull, let items = r.sequence(s, path: "\(at).sets") {
                var granted = Set<String>()
                for (j, setNode) in items.enumerated() {
                    guard let set = r.string(setNode, path: "\(at).sets[\(j)]") else { continue }
                    if !declaredNames.contains(set) {
                        r.fail(setNode.mark, "\(at).sets[\(j)]",
                            "set \(YAMLNode.quoted(set)) is not declared under `sets:`"
                                + (declared.isEmpty ? " (none are)" : " (declared: \(declared.map(\.name).joined(separator: ", ")))"))
                    } else if !granted.insert(set).inserted {
                        r.fail(setNode.mark, "\(at).sets[\(j)]", "set \(YAMLNode.quoted(set)) is listed twice")
                    } else {
                        plugin.sets.append(set)
                    }
                }
            }
            if let c = f["config"], !c.isNull {
                if case .mapping = c.kind {
                    if let json = yamlToJSON(c, path: "\(at).config", r) { plugin.configJSON = json.text }
                } else {
                    r.fail(c.mark, "\(at).config", "expected a mapping (passed to the plugin as a JSON object), got \(c.kindDescription)")
                }
            }
            out.append(plugin)
        }
        return out
    }

    /// A YAML subtree as JSON, with the YAML 1.2 core schema for plain scalars (null, booleans, integers,
    /// floats); quoted scalars are strings. Mapping keys must be scalars and unique.
    static func yamlToJSON(_ node: YAMLNode, path: String, _ r: NodeReader) -> JSON? {
        switch node.kind {
        case .sequence(let items):
            var out: [JSON] = []
            var ok = true
            for (i, item) in items.enumerated() {
                if let v = yamlToJSON(item, path: "\(path)[\(i)]", r) { out.append(v) } else { ok = false }
            }
            return ok ? .array(out) : nil
        case .mapping(let pairs):
            var out: [(String, JSON)] = []
            var seen: [String: SourceMark] = [:]
            var ok = true
            for pair in pairs {
                guard case .scalar(let key, _) = pair.key.kind else {
                    r.fail(pair.key.mark, path, "a key must be a string, got \(pair.key.kindDescription)")
                    ok = false
                    continue
                }
                if let first = seen[key] {
                    r.fail(pair.key.mark, "\(path).\(key)", "duplicate key `\(key)` (first at \(first))")
                    ok = false
                    continue
                }
                seen[key] = pair.key.mark
                if let v = yamlToJSON(pair.value, path: "\(path).\(key)", r) { out.append((key, v)) } else { ok = false }
            }
            return ok ? .object(out) : nil
        case .scalar(let s, let plain):
            guard plain else { return .string(s) }
            if node.isNull { return .null }
            switch s {
            case "true", "True", "TRUE": return .bool(true)
            case "false", "False", "FALSE": return .bool(false)
            case ".inf", ".Inf", ".INF", "+.inf", "-.inf", ".nan", ".NaN", ".NAN":
                r.fail(node.mark, path, "\(s) has no JSON form; quote it to pass a string")
                return nil
            default: break
            }
            if let n = yamlNumber(s) { return .number(n) }
            return .string(s)
        }
    }

    /// A plain scalar that the core schema reads as a number: decimal, 0x hex, 0o octal, or a float.
    static func yamlNumber(_ s: String) -> Double? {
        let u = Array(s.utf8)
        func digits(_ body: ArraySlice<UInt8>, radix: UInt64) -> Double? {
            guard !body.isEmpty else { return nil }
            var v: UInt64 = 0
            for c in body {
                let d: UInt64
                switch c {
                case 0x30...0x39: d = UInt64(c - 0x30)
                case 0x61...0x66: d = UInt64(c - 0x61 + 10)
                case 0x41...0x46: d = UInt64(c - 0x41 + 10)
                default: return nil
                }
                guard d < radix else { return nil }
                let (m, o1) = v.multipliedReportingOverflow(by: radix)
                let (a, o2) = m.addingReportingOverflow(d)
                if o1 || o2 { return nil }
                v = a
            }
            return Double(v)
        }
        if u.count > 2, u[0] == 0x30, u[1] == 0x78 { return digits(u[2...], radix: 16) }
        if u.count > 2, u[0] == 0x30, u[1] == 0x6F { return digits(u[2...], radix: 8) }
        // [-+]? ( \.[0-9]+ | [0-9]+ ( \.[0-9]* )? ) ( [eE] [-+]? [0-9]+ )?
        var i = 0
        if i < u.count, u[i] == 0x2D || u[i] == 0x2B { i += 1 }
        var mantissa = 0
        while i < u.count, (0x30...0x39).contains(u[i]) { i += 1; mantissa += 1 }
        if i < u.count, u[i] == 0x2E {
            i += 1
            while i < u.count, (0x30...0x39).contains(u[i]) { i += 1; mantissa += 1 }
        }
        guard mantissa > 0 else { return nil }
        if i < u.count, u[i] == 0x65 || u[i] == 0x45 {
            i += 1
            if i < u.count, u[i] == 0x2D || u[i] == 0x2B { i += 1 }
            var exp = 0
            while i < u.count, (0x30...0x39).contains(u[i]) { i += 1; exp += 1 }
            guard exp > 0 else { return nil }
        }
        guard i == u.count, let d = Double(s), d.isFinite else { return nil }
        return d
    }

    private static func decodeControl(_ node: YAMLNode, _ r: NodeReader) -> ControlConfig {
        var control = ControlConfig()
        guard let f = r.fields(node, path: "control", known: ["socket", "group"]) else { return control }
        if let s = f["socket"], let path = r.absolutePath(s, path: "control.socket") {
            if path.utf8.count > 107 {
                r.fail(s.mark, "control.socket", "a socket path is at most 107 bytes (sun_path), this one has \(path.utf8.count)")
            } else if path.hasSuffix("/") {
                r.fail(s.mark, "control.socket", "expected a file path, got a directory")
            } else {
                control.socket = path
            }
        }
        if let g = f["group"], let group = r.string(g, path: "control.group") {
            let ok = !group.isEmpty && group.utf8.count <= 32 && group.utf8.allSatisfy {
                ($0 >= 0x61 && $0 <= 0x7A) || ($0 >= 0x41 && $0 <= 0x5A) || ($0 >= 0x30 && $0 <= 0x39)
                    || $0 == UInt8(ascii: "_") || $0 == UInt8(ascii: "-") || $0 == UInt8(ascii: ".")
            }
            if ok { control.group = group } else {
                r.fail(g.mark, "control.group", "expected a group name or a numeric gid, got \(YAMLNode.quoted(group))")
            }
        }
        return control
    }

    private static func decodeSets(_ node: YAMLNode, zones: Set<String>, _ r: NodeReader) -> [DeclaredSet] {
        guard let items = r.sequence(node, path: "sets") else { return [] }
        var out: [DeclaredSet] = []
        var seen: [String: SourceMark] = [:]
        var zoneSets: [String: String] = [:]
        for z in zones {
            for n in [Desired.v4SetName(z), Desired.v6SetName(z), Desired.ifacesSetName(z)] { zoneSets[n] = z }
        }
        for (i, item) in items.enumerated() {
            let path = "sets[\(i)]"
            guard let f = r.fields(item, path: path, known: ["name", "type", "flags", "timeout", "elements"]) else { continue }
            var ok = true
            var name = ""
            if let n = f["name"], let v = r.string(n, path: path + ".name") {
                if let p = Names.setNameProblem(v) {
                    r.fail(n.mark, path + ".name", "\(p), got \(YAMLNode.quoted(v))")
                    ok = false
                } else if let z = zoneSets[v] {
                    r.fail(n.mark, path + ".name", "\(YAMLNode.quoted(v)) is already a set of zone \(z)")
                    ok = false
                } else if let first = seen[v] {
                    r.fail(n.mark, path + ".name", "set \(YAMLNode.quoted(v)) is declared twice (first at \(first))")
                    ok = false
                } else {
                    seen[v] = n.mark
                    name = v
                }
            } else {
                if f["name"] == nil { r.fail(item.mark, path, "missing required field `name`") }
                ok = false
            }
            var family = IPFamily.v4
            if let t = f["type"], let v = r.string(t, path: path + ".type") {
                switch v {
                case "ipv4_addr": family = .v4
                case "ipv6_addr": family = .v6
                default:
                    r.fail(t.mark, path + ".type", "expected ipv4_addr or ipv6_addr, got \(YAMLNode.quoted(v))")
                    ok = false
                }
            } else {
                if f["type"] == nil { r.fail(item.mark, path, "missing required field `type` (ipv4_addr or ipv6_addr)") }
                ok = false
            }
            var interval = false
            var timeoutFlag = false
            if let fl = f["flags"], let list = r.sequence(fl, path: path + ".flags") {
                for (k, el) in list.enumerated() {
                    guard let v = r.string(el, path: "\(path).flags[\(k)]") else {
                        ok = false
                        continue
                    }
                    switch v {
                    case "interval" where !interval: interval = true
                    case "timeout" where !timeoutFlag: timeoutFlag = true
                    case "interval", "timeout":
                        r.fail(el.mark, "\(path).flags[\(k)]", "flag \(v) is listed twice")
                        ok = false
                    default:
                        r.fail(el.mark, "\(path).flags[\(k)]", "expected interval or timeout, got \(YAMLNode.quoted(v))")
                        ok = false
                    }
                }
            }
            var timeout: UInt64? = nil
            if let t = f["timeout"], let v = r.string(t, path: path + ".timeout") {
                switch Durations.parse(v) {
                case .success(let ms):
                    if timeoutFlag {
                        timeout = ms
                    } else {
                        r.fail(t.mark, path + ".timeout", "a default timeout needs `flags: [timeout]`")
                        ok = false
                    }
                case .failure(let e):
                    r.fail(t.mark, path + ".timeout", e.description)
                    ok = false
                }
            }
            var elements: [IPPrefix] = []
            if let e = f["elements"], let list = r.sequence(e, path: path + ".elements") {
                if timeout != nil, !list.isEmpty {
                    r.fail(e.mark, path + ".elements", "elements of a set with a default timeout would expire; drop `timeout:` or list them elsewhere")
                    ok = false
                }
                var seenEl = Set<IPPrefix>()
                for (k, el) in list.enumerated() {
                    let epath = "\(path).elements[\(k)]"
                    guard let p = r.prefix(el, path: epath) else {
                        ok = false
                        continue
                    }
                    if p.address.family != family {
                        r.fail(el.mark, epath, "\(p.address) is not an \(family == .v4 ? "IPv4" : "IPv6") address (the set's type is \(SetKeyType(family)))")
                        ok = false
                    } else if p.length != family.maxPrefixLength && !interval {
                        r.fail(el.mark, epath, "\(p) is a prefix; a set holding prefixes needs `flags: [interval]`")
                        ok = false
                    } else if !seenEl.insert(p).inserted {
                        r.fail(el.mark, epath, "\(p.compactDescription) is listed twice")
                        ok = false
                    } else {
                        elements.append(p)
                    }
                }
            }
            if ok {
                out.append(DeclaredSet(
                    name: name, family: family, interval: interval, timeoutFlag: timeoutFlag, defaultTimeoutMs: timeout,
                    elements: elements))
            }
        }
        return out
    }

    private static func decodeInterfaces(_ node: YAMLNode, _ r: NodeReader) -> [InterfaceConfig] {
        guard let items = r.sequence(node, path: "interfaces") else { return [] }
        var out: [InterfaceConfig] = []
        var seen: [String: SourceMark] = [:]
        for (i, item) in items.enumerated() {
            let path = "interfaces[\(i)]"
            guard let f = r.fields(
                item, path: path,
                known: ["name", "zone", "dhcp", "addresses", "exclusive", "up", "mtu"],
                aliases: ["nftables_zone": "zone", "address": "addresses"])
            else { continue }
            var iface = InterfaceConfig(name: "", zone: "")
            var ok = true
            if let n = f["name"] {
                if let name = r.string(n, path: path + ".name") {
                    if let p = Names.interfaceNameProblem(name) ?? Names.nftTextProblem(name) {
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
            if let e = f["exclusive"], let b = r.bool(e, path: path + ".exclusive") { iface.exclusive = b }
            if let u = f["up"], let b = r.bool(u, path: path + ".up") { iface.up = b }
            if let m = f["mtu"] {
                // A bad MTU is reported but keeps the interface (and its zone) for the checks that follow.
                if let v = r.integer(m, path: path + ".mtu", in: 68...65535, what: "an MTU") { iface.mtu = UInt32(v) }
            }
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

    func absolutePath(_ node: YAMLNode, path: String) -> String? {
        guard let s = string(node, path: path) else { return nil }
        guard s.hasPrefix("/"), !s.utf8.contains(0), !s.split(separator: "/").contains("..") else {
            fail(node.mark, path, "expected an absolute path without `..`, got \(YAMLNode.quoted(s))")
            return nil
        }
        return s
    }

    /// A plain integer scalar within `range`.
    func integer(_ node: YAMLNode, path: String, in range: ClosedRange<Int>, what: String) -> Int? {
        guard case .scalar(let s, plain: true) = node.kind, let v = Int(s) else {
            fail(node.mark, path, "expected \(what), got \(node.kindDescription)")
            return nil
        }
        guard range.contains(v) else {
            fail(node.mark, path, "\(v) is out of range for \(what) (\(range.lowerBound)–\(range.upperBound))")
            return nil
        }
        return v
    }

    /// A port (8080) or an inclusive range ("8000-8010"), 1–65535.
    func portRange(_ node: YAMLNode, path: String) -> ClosedRange<UInt16>? {
        guard case .scalar(let s, _) = node.kind, !node.isNull else {
            fail(node.mark, path, "expected a port (1–65535) or a range such as 8000-8010, got \(node.kindDescription)")
            return nil
        }
        let parts = s.split(separator: "-", omittingEmptySubsequences: false)
        let values = parts.map { Int($0.filter { $0 != " " }) }
        guard (1...2).contains(parts.count), values.allSatisfy({ $0 != nil }) else {
            fail(node.mark, path, "expected a port (1–65535) or a range such as 8000-8010, got \(YAMLNode.quoted(s))")
            return nil
        }
        let lo = values[0]!, hi = values.last!!
        guard (1...65535).contains(lo), (1...65535).contains(hi) else {
            fail(node.mark, path, "port \((1...65535).contains(lo) ? hi : lo) is out of range (1–65535)")
            return nil
        }
        guard lo <= hi else {
            fail(node.mark, path, "the range \(lo)-\(hi) runs backwards")
            return nil
        }
        return UInt16(lo)...UInt16(hi)
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
