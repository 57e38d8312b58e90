/// What the configured network should look like (static addresses, link state, routes, forwarding sysctls)
/// against what the kernel reports, as the list of changes that closes the gap. Pure: the reconciler applies
/// the changes through a `NetworkBackend` and the kernel's notifications confirm them.
///
/// Ownership: rnm removes only what it added (addresses with IFA_PROTO and routes with rtm_protocol
/// `NetworkMark.protocolID`), except on an `exclusive: true` interface, where every address the config does
/// not list goes (but a DHCP client's and IPv6 link-local ones). Routes it did not add are never touched.
public enum NetworkPlan {
    public enum Op: Hashable, Sendable, CustomStringConvertible {
        case addAddress(IPPrefix, ifindex: Int32, ifname: String)
        case deleteAddress(IPPrefix, ifindex: Int32, ifname: String, why: String)
        case setLink(ifindex: Int32, ifname: String, up: Bool?, mtu: UInt32?)
        case addRoute(Route)
        case replaceRoute(Route)
        case deleteRoute(Route)
        case sysctl(key: String, value: String)

        public var description: String {
            switch self {
            case .addAddress(let p, _, let n): return "add address \(p) on \(n)"
            case .deleteAddress(let p, _, let n, let why): return "remove address \(p) from \(n) (\(why))"
            case .setLink(_, let n, let up, let mtu):
                return "set link \(n)" + (up == true ? " up" : up == false ? " down" : "") + (mtu.map { " mtu \($0)" } ?? "")
            case .addRoute(let r): return "add route \(NetworkPlan.describe(r))"
            case .replaceRoute(let r): return "replace route \(NetworkPlan.describe(r))"
            case .deleteRoute(let r): return "remove route \(NetworkPlan.describe(r))"
            case .sysctl(let k, let v): return "sysctl \(k.replacingSlashes) = \(v)"
            }
        }

        /// The thing the op is about, for remembering failures across plans ("route 10.20.0.0/16").
        public var subject: String {
            switch self {
            case .addAddress(let p, _, let n), .deleteAddress(let p, _, let n, _): return "address \(p) on \(n)"
            case .setLink(_, let n, _, _): return "link \(n)"
            case .addRoute(let r), .replaceRoute(let r), .deleteRoute(let r): return "route \(r.key)"
            case .sysctl(let k, _): return "sysctl \(k.replacingSlashes)"
            }
        }
    }

    static func describe(_ r: Route) -> String {
        "\(r.key)" + (r.gateway.map { " via \($0)" } ?? "") + (r.oif.map { " oif \($0)" } ?? "")
    }

    /// The routes the config asks for that can be expressed now (a `dev` that does not exist yet: not yet).
    public static func desiredRoutes(_ config: Config, _ observed: ObservedState) -> (routes: [Route], waiting: [(RouteConfig, String)]) {
        var out: [Route] = []
        var waiting: [(RouteConfig, String)] = []
        for rc in config.routes {
            var oif: Int32? = nil
            if let dev = rc.dev {
                guard let link = observed.link(named: dev) else {
                    waiting.append((rc, "interface \(dev) is not present"))
                    continue
                }
                oif = link.index
            }
            // The kernel stores an IPv6 route's metric 0 as 1024 (its default); compare like with like.
            let metric = rc.metric.map { $0 == 0 && rc.to.address.family == .v6 ? 1024 : $0 } ?? (rc.to.address.family == .v6 ? 1024 : 0)
            out.append(Route(key: RouteKey(table: rc.table, destination: rc.to, metric: metric), gateway: rc.via, oif: oif))
        }
        return (out, waiting)
    }

    /// The sysctls the config asks for, given the links present.
    public static func desiredSysctls(_ config: Config, _ observed: ObservedState) -> [String: String] {
        guard config.forwarding else { return [:] }
        var out: [String: String] = [:]
        for iface in config.interfaces where observed.link(named: iface.name) != nil {
            out["net/ipv4/conf/\(iface.name)/forwarding"] = "1"
            out["net/ipv6/conf/\(iface.name)/forwarding"] = "1"
        }
        // IPv6 forwards only when the global switch is on (the per-interface one decides router behaviour).
        if !out.isEmpty { out["net/ipv6/conf/all/forwarding"] = "1" }
        return out
    }

    /// The changes that make the kernel match the config. `routesKnown`: the kernel's routes were dumped
    /// (until then no route is planned: it might exist already). `sysctlsDone`: sysctls already written.
    public static func compute(
        config: Config, observed: ObservedState, routesKnown: Bool = true, sysctlsDone: [String: String] = [:]
    ) -> [Op] {
        var ops: [Op] = []
        for iface in config.interfaces {
            guard let link = observed.link(named: iface.name) else { continue }
            let up: Bool? = iface.up && !link.isUp ? true : nil
            let mtu: UInt32? = iface.mtu.flatMap { link.mtu == $0 ? nil : $0 }
            if up != nil || mtu != nil { ops.append(.setLink(ifindex: link.index, ifname: link.name, up: up, mtu: mtu)) }
            let present = observed.addresses(onLink: link.index)
            let wanted = Set(iface.addresses.map { AddressKey(ifindex: link.index, address: $0.address, prefixLength: $0.length) })
            for p in iface.addresses {
                let key = AddressKey(ifindex: link.index, address: p.address, prefixLength: p.length)
                if observed.addresses[key] == nil { ops.append(.addAddress(p, ifindex: link.index, ifname: link.name)) }
            }
            for a in present.sorted(by: { $0.key.address < $1.key.address }) where !wanted.contains(a.key) {
                let prefix = IPPrefix(address: a.key.address, length: a.key.prefixLength)
                if a.isRNMs {
                    ops.append(.deleteAddress(prefix, ifindex: link.index, ifname: link.name, why: "no longer in the config"))
                } else if iface.exclusive, !a.isLinkLocal, !(iface.dhcp && a.validLifetime != .max), !a.key.address.isLoopback {
                    ops.append(.deleteAddress(prefix, ifindex: link.index, ifname: link.name, why: "exclusive: not in the config"))
                }
            }
        }
        // rnm's addresses on links the config no longer lists (their entry was removed).
        let configured = Set(config.interfaces.map(\.name))
        for link in observed.links.values.sorted(by: { $0.index < $1.index }) where !configured.contains(link.name) {
            for a in observed.addresses(onLink: link.index).sorted(by: { $0.key.address < $1.key.address }) where a.isRNMs {
                ops.append(.deleteAddress(IPPrefix(address: a.key.address, length: a.key.prefixLength), ifindex: link.index,
                                          ifname: link.name, why: "the interface is no longer in the config"))
            }
        }
        if routesKnown {
            let (routes, _) = desiredRoutes(config, observed)
            let wanted = Dictionary(routes.map { ($0.key, $0) }, uniquingKeysWith: { a, _ in a })
            for r in routes {
                guard let have = observed.routes[r.key] else {
                    ops.append(.addRoute(r))
                    continue
                }
                if have.gateway != r.gateway || (r.oif != nil && have.oif != r.oif) { ops.append(.replaceRoute(r)) }
            }
            for (key, have) in observed.routes.sorted(by: { "\($0.key)" < "\($1.key)" }) where wanted[key] == nil {
                ops.append(.deleteRoute(have))
            }
        }
        for (k, v) in desiredSysctls(config, observed).sorted(by: { $0.key < $1.key }) where sysctlsDone[k] != v {
            ops.append(.sysctl(key: k, value: v))
        }
        return ops
    }
}

extension IPAddress {
    var isLoopback: Bool {
        switch self {
        case .v4(let a): a.isLoopback
        case .v6(let a): a.isLoopback
        }
    }
}

extension String {
    /// "net/ipv4/conf/eth0/forwarding" → "net.ipv4.conf.eth0.forwarding" (as sysctl(8) writes it).
    var replacingSlashes: String { String(map { $0 == "/" ? "." : $0 }) }
}
