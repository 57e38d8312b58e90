/// The chains rnm generates from `masquerade:` and `forwards:`, rendered into our table ahead of the templates
/// (and so part of its structure: plan, drift repair and the audit cover them like template chains).
///
/// - `rnm_prerouting` (nat, dstnat), only with forwards: per forward, DNAT of traffic that arrives on the
///   zone's interfaces for one of the zone's current addresses (`@<zone>_v4` or `@<zone>_v6`, by the family of
///   `to`: an address change is a set element change, never a re-render). With `hairpin`, the same for traffic
///   arriving on each other zone's interfaces (never the router's own traffic, never interfaces outside zones).
/// - `rnm_postrouting` (nat, srcnat), only with masquerade entries or hairpin forwards: IPv4 masquerade per
///   entry; per hairpin forward and other zone, masquerade of the reflected connections so that the replies
///   come back through the router.
/// - `rnm_forward` (a regular chain, always there, possibly empty): accepts what the forwards sent inwards.
///   Templates `jump rnm_forward` from their forward chain.
///
/// Everything written here comes from typed config values: zone names (validated, they are set names
/// already), addresses (printed from their parsed form), port numbers and the protocol enum.
public enum NATRender {
    public static let preroutingChain = "rnm_prerouting"
    public static let postroutingChain = "rnm_postrouting"
    public static let forwardChain = "rnm_forward"

    /// One generated chain: its name and its lines (indented one tab deeper than the table, closing brace
    /// included).
    public struct Chain: Equatable, Sendable {
        public var name: String
        public var lines: [String]
    }

    /// The chains in the order they are rendered.
    public static func chains(_ config: Config) -> [Chain] {
        var out: [Chain] = []
        let pre = prerouting(config)
        if !pre.isEmpty {
            out.append(chain(preroutingChain, hook: "type nat hook prerouting priority dstnat; policy accept;", pre))
        }
        let post = postrouting(config)
        if !post.isEmpty {
            out.append(chain(postroutingChain, hook: "type nat hook postrouting priority srcnat; policy accept;", post))
        }
        out.append(chain(forwardChain, hook: nil, forward(config)))
        return out
    }

    static func chain(_ name: String, hook: String?, _ rules: [String]) -> Chain {
        var lines = ["\tchain \(name) {"]
        if let hook { lines.append("\t\t" + hook) }
        lines += rules.map { "\t\t" + $0 }
        lines.append("\t}")
        return Chain(name: name, lines: lines)
    }

    /// DNAT rules: per forward, its zone, then (hairpin) every other zone in config order.
    static func prerouting(_ config: Config) -> [String] {
        var out: [String] = []
        for f in config.forwards {
            let match = "\(family(f)) daddr @\(addressSet(f)) \(f.proto.rawValue) dport \(ports(f.port)) dnat \(family(f)) to \(target(f))"
            out.append("iifname @\(Desired.ifacesSetName(f.zone)) " + match)
            for other in hairpinZones(f, config) {
                out.append("iifname @\(Desired.ifacesSetName(other)) " + match)
            }
        }
        return out
    }

    /// Masquerade entries (IPv4 only, like the shipped router template did), then the hairpin masquerades.
    static func postrouting(_ config: Config) -> [String] {
        var out: [String] = []
        for m in config.masquerade {
            out.append("meta nfproto ipv4 iifname @\(Desired.ifacesSetName(m.from)) oifname @\(Desired.ifacesSetName(m.to)) masquerade")
        }
        for f in config.forwards {
            // A reflected connection: it arrived on another zone's interface, was addressed to one of the
            // forward zone's addresses, and was sent to the target by the DNAT above.
            let fam = family(f)
            let match = "ct status dnat ct original \(fam) daddr @\(addressSet(f)) \(fam) daddr \(f.to) "
                + "\(f.proto.rawValue) dport \(ports(targetPorts(f))) masquerade"
            for other in hairpinZones(f, config) {
                out.append("iifname @\(Desired.ifacesSetName(other)) " + match)
            }
        }
        return out
    }

    /// Forward accepts for the DNATed connections, one per distinct target.
    static func forward(_ config: Config) -> [String] {
        var out: [String] = []
        for f in config.forwards {
            let rule = "ct status dnat \(family(f)) daddr \(f.to) \(f.proto.rawValue) dport \(ports(targetPorts(f))) accept"
            if !out.contains(rule) { out.append(rule) }
        }
        return out
    }

    static func hairpinZones(_ f: ForwardConfig, _ config: Config) -> [String] {
        f.hairpin ? config.zones.filter { $0 != f.zone } : []
    }

    static func family(_ f: ForwardConfig) -> String { f.to.family == .v4 ? "ip" : "ip6" }

    static func addressSet(_ f: ForwardConfig) -> String {
        f.to.family == .v4 ? Desired.v4SetName(f.zone) : Desired.v6SetName(f.zone)
    }

    static func targetPorts(_ f: ForwardConfig) -> ClosedRange<UInt16> { f.toPort ?? f.port }

    static func ports(_ r: ClosedRange<UInt16>) -> String {
        r.count == 1 ? "\(r.lowerBound)" : "\(r.lowerBound)-\(r.upperBound)"
    }

    /// The DNAT target. The same ports: the address alone (the port is left as it is). One port: `addr:port`.
    /// A shifted range: a map from each port to its counterpart, because a port range in a DNAT target is a
    /// pool the kernel picks one free port from (every connection of 8000-8010 → 80-90 would go to 80), not a
    /// one-to-one mapping.
    static func target(_ f: ForwardConfig) -> String {
        let to = targetPorts(f)
        let v6 = f.to.family == .v6
        if to == f.port { return "\(f.to)" }
        let host = v6 ? "[\(f.to)]" : "\(f.to)"
        if to.count == 1 { return "\(host):\(to.lowerBound)" }
        let pairs = zip(f.port, to).map { "\($0) : \($1)" }
        return "\(host):\(f.proto.rawValue) dport map { " + pairs.joined(separator: ", ") + " }"
    }
}
