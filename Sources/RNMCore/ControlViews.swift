/// The JSON results of the read-only verbs, built from the reconciler's state (pure, so it is tested as such).
public enum ControlViews {
    /// What the reconciler knows besides `ReconcileState`.
    public struct DaemonInfo: Sendable {
        public var version: String
        public var state: String
        public var uptimeMs: UInt64
        public var configPath: String
        public var generation: Int
        /// Wall-clock time of the last successful commit (epoch ns), and how many so far.
        public var lastCommitWall: UInt64?
        public var lastError: String?
        public var lastErrorWall: UInt64?
        public var counters: [(String, Int)]
        /// Per set: the last transaction that touched it.
        public var setCommits: [String: SetCommitInfo]
        /// Plugins: name, state, health.
        public var plugins: JSON
        /// Applied addresses, routes and their state.
        public var network: JSON = .null

        public init(
            version: String, state: String, uptimeMs: UInt64, configPath: String, generation: Int,
            lastCommitWall: UInt64? = nil, lastError: String? = nil, lastErrorWall: UInt64? = nil,
            counters: [(String, Int)] = [], setCommits: [String: SetCommitInfo] = [:], plugins: JSON = .array([])
        ) {
            self.setCommits = setCommits
            self.plugins = plugins
            self.version = version
            self.state = state
            self.uptimeMs = uptimeMs
            self.configPath = configPath
            self.generation = generation
            self.lastCommitWall = lastCommitWall
            self.lastError = lastError
            self.lastErrorWall = lastErrorWall
            self.counters = counters
        }
    }

    /// The transactions that touched one set.
    public struct SetCommitInfo: Equatable, Sendable {
        public var lastCommitWall: UInt64?
        public var transactions: Int
        public var lastError: String?
        public var lastErrorWall: UInt64?

        public init(lastCommitWall: UInt64? = nil, transactions: Int = 0, lastError: String? = nil, lastErrorWall: UInt64? = nil) {
            self.lastCommitWall = lastCommitWall
            self.transactions = transactions
            self.lastError = lastError
            self.lastErrorWall = lastErrorWall
        }
    }

    static func time(_ t: UInt64?) -> JSON { t.map { .string(WallTime.rfc3339(epochNanos: $0)) } ?? .null }

    public static func status(_ s: ReconcileState, _ info: DaemonInfo) -> JSON {
        let transactions = info.counters.first { $0.0 == "transactions_ok" }?.1 ?? 0
        return .object([
            ("version", .string(info.version)),
            ("state", .string(info.state)),
            ("uptime_ms", .number(Double(info.uptimeMs))),
            ("config", .object([
                ("path", .string(info.configPath)), ("generation", .int(info.generation)),
                ("table", .string("inet \(s.config.table)")),
            ])),
            ("interfaces", interfaces(s)),
            ("sets", sets(s, commits: info.setCommits)),
            ("last_commit", .object([
                ("time", time(info.lastCommitWall)), ("transactions", .int(transactions)),
                ("last_error", info.lastError.map { .string($0) } ?? .null), ("last_error_time", time(info.lastErrorWall)),
            ])),
            ("counters", .object(info.counters.map { ($0.0, .int($0.1)) })),
            ("plugins", info.plugins),
            ("network", info.network),
        ])
    }

    /// Configured interfaces with what the kernel says about them.
    public static func interfaces(_ s: ReconcileState) -> JSON {
        let byName = Dictionary(s.observed.links.values.map { ($0.name, $0) }, uniquingKeysWith: { a, _ in a })
        return .array(s.config.interfaces.map { iface in
            var pairs: [(String, JSON)] = [("name", .string(iface.name)), ("zone", .string(iface.zone))]
            if let link = byName[iface.name] {
                pairs.append(("present", .bool(true)))
                pairs.append(("ifindex", .int(Int(link.index))))
                pairs.append(("up", .bool(link.isUp)))
                pairs.append(("oper_state", .string(link.operState.description)))
                let addrs = s.observed.addresses(onLink: link.index).sorted { ($0.key.address, $0.key.prefixLength) < ($1.key.address, $1.key.prefixLength) }
                pairs.append(("addresses", .array(addrs.map { a in
                    .object([
                        ("address", .string("\(a.key.address)/\(a.key.prefixLength)")),
                        ("flags", .array(a.flagNames.map { .string($0) })),
                        ("in_set", .bool(Desired.isMember(a, policy: s.config.addressPolicy))),
                    ])
                })))
            } else {
                pairs.append(("present", .bool(false)))
            }
            return .object(pairs)
        })
    }

    public static func sets(_ s: ReconcileState, commits: [String: SetCommitInfo] = [:]) -> JSON {
        .array(s.setSpecs.values.sorted { $0.name < $1.name }.map { spec in
            let c = commits[spec.name] ?? SetCommitInfo()
            return .object([
                ("name", .string(spec.name)),
                ("type", .string(spec.type.description)),
                ("family", spec.type.family.map { .string($0.rawValue) } ?? .null),
                ("flags", .array(spec.flags.names.map { .string($0) })),
                ("timeout", spec.timeoutMs.map { .string(Durations.format(ms: $0)) } ?? .null),
                ("elements", .int(s.desiredCount(of: spec.name))),
                ("owners", .array(s.owners(of: spec.name).map { .string($0.description) })),
                ("last_commit", .object([
                    ("time", time(c.lastCommitWall)), ("transactions", .int(c.transactions)),
                    ("last_error", c.lastError.map { .string($0) } ?? .null), ("last_error_time", time(c.lastErrorWall)),
                ])),
            ])
        })
    }

    /// One set: its contributions with owners and remaining timeout. nil if the set is not managed.
    public static func setShow(_ s: ReconcileState, _ name: String, now: UInt64) -> JSON? {
        guard let spec = s.setSpecs[name] else { return nil }
        return .object([
            ("name", .string(name)),
            ("type", .string(spec.type.description)),
            ("flags", .array(spec.flags.names.map { .string($0) })),
            ("timeout", spec.timeoutMs.map { .string(Durations.format(ms: $0)) } ?? .null),
            ("kernel_elements", .int(s.desiredCount(of: name))),
            ("elements", .array(s.contributions(of: name).map { c in
                .object([
                    ("element", .string(c.element.description)),
                    ("owners", .array(c.owners.map { .string($0.description) })),
                    ("expires_in_ms", c.deadline == .never ? .null : .number(Double(c.deadline > now ? (c.deadline - now) / 1_000_000 : 0))),
                ])
            })),
        ])
    }
}

/// Human renderings of results, shared by rnmctl and the plain-text answers.
public enum ControlText {
    /// Columns padded to the widest cell; the last column is not padded.
    public static func table(_ header: [String], _ rows: [[String]]) -> String {
        let all = [header] + rows
        var widths = [Int](repeating: 0, count: header.count)
        for r in all {
            for (i, c) in r.enumerated() where i < widths.count { widths[i] = max(widths[i], c.count) }
        }
        return all.map { r in
            r.enumerated().map { i, c in i == r.count - 1 ? c : c + String(repeating: " ", count: widths[i] - c.count) }
                .joined(separator: "  ")
        }.joined(separator: "\n")
    }

    static func str(_ v: JSON?) -> String {
        switch v {
        case .string(let s)?: return s
        case .number?: return v!.int.map(String.init) ?? v!.text
        case .bool(let b)?: return b ? "yes" : "no"
        case .null?, nil: return "-"
        default: return v!.text
        }
    }

    public static func status(_ r: JSON) -> String {
        var lines: [String] = []
        let config = r["config"]
        lines.append("rnmd \(str(r["version"])), \(str(r["state"])), up \(Durations.format(ms: UInt64(r["uptime_ms"]?.int ?? 0)))")
        lines.append("config \(str(config?["path"])) (generation \(str(config?["generation"]))), table \(str(config?["table"]))")
        let lc = r["last_commit"]
        var commit = "last commit \(str(lc?["time"])), \(str(lc?["transactions"])) transactions"
        if let e = lc?["last_error"]?.string { commit += "; last error at \(str(lc?["last_error_time"])): \(e)" }
        lines.append(commit)
        lines.append("")
        var rows: [[String]] = []
        for i in r["interfaces"]?.array ?? [] {
            let present = i["present"]?.bool == true
            let addrs = (i["addresses"]?.array ?? []).map { a -> String in
                var s = str(a["address"])
                let flags = (a["flags"]?.array ?? []).compactMap(\.string).filter { $0 != "permanent" }
                if !flags.isEmpty { s += " (\(flags.joined(separator: ",")))" }
                if a["in_set"]?.bool == false { s += " [not in set]" }
                return s
            }
            rows.append([
                str(i["name"]), str(i["zone"]), present ? str(i["ifindex"]) : "-",
                present ? str(i["oper_state"]) : "absent", addrs.isEmpty ? "-" : addrs.joined(separator: ", "),
            ])
        }
        lines.append(table(["INTERFACE", "ZONE", "INDEX", "STATE", "ADDRESSES"], rows))
        lines.append("")
        lines.append(sets(r["sets"] ?? .array([])))
        lines.append("")
        let counters = (r["counters"]?.object ?? []).map { "\($0.0)=\(str($0.1))" }
        lines.append("counters: " + counters.joined(separator: " "))
        if let net = r["network"], net["managed"]?.bool == true {
            let addrs = (net["addresses"]?.array ?? []).map { "\(str($0["address"])) on \(str($0["interface"])): \(str($0["state"]))" }
            let routes = (net["routes"]?.array ?? []).map { r in
                "route \(str(r["to"]))" + (r["via"]?.string.map { " via \($0)" } ?? "") + ": \(str(r["state"]))"
            }
            if !addrs.isEmpty || !routes.isEmpty {
                lines.append("network" + (net["forwarding"]?.bool == true ? " (forwarding on)" : "") + ":")
                for l in addrs + routes { lines.append("  " + l) }
            }
        }
        let plugins = r["plugins"]?.array ?? []
        lines.append(plugins.isEmpty ? "plugins: none configured" : "plugins: " + plugins.map { p in
            "\(str(p["name"])) (\(str(p["state"]))\(p["health"]?.string.map { $0 == "ok" ? "" : ", \($0)" } ?? ""))"
        }.joined(separator: ", "))
        return lines.joined(separator: "\n")
    }

    /// `plugins list`: one row per plugin, then the last error of those that have one.
    public static func plugins(_ r: JSON) -> String {
        let list = r.array ?? []
        guard !list.isEmpty else { return "no plugins configured" }
        let rows = list.map { p -> [String] in
            let sets = (p["sets"]?.array ?? []).map { "\(str($0["name"])):\(str($0["elements"]))" }.joined(separator: ",")
            // Health message and version come from the plugin: escaped, so they cannot break the table.
            var health = p["health"]?.string ?? "-"
            if let m = p["message"]?.string { health += " (\(YAMLNode.escaped(m, limit: 80)))" }
            return [str(p["name"]), str(p["state"]), health, p["version"]?.string.map { YAMLNode.escaped($0, limit: 32) } ?? "-", sets.isEmpty ? "-" : sets,
                    str(p["accepted"]), str(p["rejected"]), str(p["busy"])]
        }
        var out = table(["NAME", "STATE", "HEALTH", "VERSION", "SETS:ELEMENTS", "ACCEPTED", "REJECTED", "BUSY"], rows)
        for p in list {
            if let e = p["last_error"]?.string { out += "\n\(str(p["name"])): \(YAMLNode.escaped(e))" }
        }
        return out
    }

    public static func sets(_ r: JSON) -> String {
        let rows = (r.array ?? []).map { s -> [String] in
            var flags = (s["flags"]?.array ?? []).compactMap(\.string).joined(separator: ",")
            if let t = s["timeout"]?.string { flags += (flags.isEmpty ? "" : " ") + "timeout \(t)" }
            let lc = s["last_commit"]
            var last = lc?["time"]?.string.map { String($0.prefix(19)) } ?? "-"
            if lc?["last_error"]?.string != nil { last += " (last error)" }
            return [str(s["name"]), str(s["type"]), flags.isEmpty ? "-" : flags, str(s["elements"]),
                    str(lc?["transactions"]), last, (s["owners"]?.array ?? []).compactMap(\.string).joined(separator: ",")]
        }
        return table(["SET", "TYPE", "FLAGS", "ELEMENTS", "TX", "LAST COMMIT", "OWNERS"], rows)
    }

    public static func setShow(_ r: JSON) -> String {
        var flags = (r["flags"]?.array ?? []).compactMap(\.string).joined(separator: ",")
        if let t = r["timeout"]?.string { flags += (flags.isEmpty ? "" : ", ") + "default timeout \(t)" }
        let head = "set \(str(r["name"])) (\(str(r["type"]))\(flags.isEmpty ? "" : ", \(flags)")): \(str(r["kernel_elements"])) kernel elements"
        let rows = (r["elements"]?.array ?? []).map { e -> [String] in
            let expires = e["expires_in_ms"]?.int.map { Durations.format(ms: UInt64($0)) } ?? "-"
            return [str(e["element"]), (e["owners"]?.array ?? []).compactMap(\.string).joined(separator: ","), expires]
        }
        return head + "\n" + (rows.isEmpty ? "(empty)" : table(["ELEMENT", "OWNERS", "EXPIRES IN"], rows))
    }

    /// One line per event.
    public static func event(_ e: JSON) -> String {
        let t = str(e["time"])
        switch e["event"]?.string {
        case "address":
            return "\(t) address \(str(e["op"])) \(str(e["address"])) on \(str(e["ifname"]))" + (e["zone"]?.string.map { " (zone \($0))" } ?? "")
        case "link":
            return "\(t) link \(str(e["op"])) \(str(e["ifname"])) (index \(str(e["ifindex"])))"
        case "commit":
            return "\(t) commit +\(str(e["added"])) -\(str(e["removed"])) in \((e["sets"]?.array ?? []).compactMap(\.string).joined(separator: ",")) (\(str(e["us"])) µs)"
        case "commit_failed":
            return "\(t) commit FAILED: \(str(e["error"]))"
        case "resync":
            return "\(t) resync after a netlink overrun: \(str(e["links"])) links, \(str(e["addresses"])) addresses"
        case "reload":
            return e["ok"]?.bool == true
                ? "\(t) reload: generation \(str(e["generation"]))\(e["changed"]?.bool == false ? " (unchanged)" : "")"
                : "\(t) reload FAILED: \(str(e["error"]))"
        case "manual":
            return "\(t) manual \(str(e["op"])) \(str(e["set"])): \((e["elements"]?.array ?? []).compactMap(\.string).joined(separator: " "))"
        case "dropped":
            return "\(t) (\(str(e["count"])) events dropped: this client read too slowly)"
        case "load":
            return "\(t) table loaded (\(str(e["reason"]))): \(str(e["elements"])) elements, \(str(e["ms"])) ms"
        case "drift":
            let who = e["pid"].map { " by pid \(str($0))" + (e["process"]?.string.map { " (\(YAMLNode.quoted($0)))" } ?? "") } ?? ""
            // The detail names objects a foreign process created; keep it to one line whatever they are called.
            let detail = str(e["detail"])
            let safe = detail.unicodeScalars.contains { $0.value < 0x20 || $0.value == 0x7F } ? YAMLNode.quoted(detail) : detail
            return "\(t) drift (\(str(e["kind"])))\(who): \(safe); \(str(e["action"]))"
        case "repaired":
            return "\(t) table repaired in \(str(e["ms"])) ms"
        default:
            return e.text
        }
    }
}
