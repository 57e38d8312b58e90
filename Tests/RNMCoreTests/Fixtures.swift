import RNMCore

/// Small builders so case tables read like the situation they describe.
enum F {
    static let config = Config(
        table: "rnm",
        interfaces: [
            InterfaceConfig(name: "eth0", zone: "wan", dhcp: true),
            InterfaceConfig(name: "eth1", zone: "lan"),
            InterfaceConfig(name: "eth2", zone: "lan"),
        ])

    static func link(_ index: Int32, _ name: String) -> Link { Link(index: index, name: name, isUp: true, operState: .up) }

    static func addr(_ index: Int32, _ text: String, _ flags: AddressFlags = .permanent, scope: UInt8 = 0) -> Address {
        let p = IPPrefix(text)!
        return Address(key: AddressKey(ifindex: index, address: p.address, prefixLength: p.length), flags: flags, scope: scope)
    }

    static func v4(_ s: String) -> SetElement { .ipv4(IPv4Address(s)!) }
    static func v6(_ s: String) -> SetElement { .ipv6(IPv6Address(s)!) }

    /// A state that has read back `applied`, seen `links` and `addresses`, and committed its first plan.
    static func converged(
        config: Config = F.config, links: [Link] = [link(2, "eth0"), link(3, "eth1")], addresses: [Address] = []
    ) -> ReconcileState {
        var s = ReconcileState(config: config)
        s.setApplied(nil)
        s.apply(.snapshot(links: links, addresses: addresses))
        s.committed(s.plan())
        return s
    }
}
