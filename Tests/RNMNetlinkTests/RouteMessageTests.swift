import Glibc
import RNMCore
import RNMNetlink
import Testing

/// Decoding tests on bytes recorded from a real kernel (Fixtures/rtnetlink-events.hex).
@Suite struct RouteMessageTests {
    /// Command → the messages it produced, as bytes.
    static let recorded = Recording.load("rtnetlink-events.hex")

    static func events(after command: String) -> [NetEvent] {
        let msgs = recorded.first { $0.command == command }!.messages
        return msgs.flatMap { RouteMessages.parse($0).events }
    }

    static func key(_ index: Int32, _ text: String) -> AddressKey {
        let p = IPPrefix(text)!
        return AddressKey(ifindex: index, address: p.address, prefixLength: p.length)
    }

    @Test func newLink_givesIndexNameAndState() {
        let events = Self.events(after: "ip link set veth0 up; ip link set veth1 up")
        #expect(events.count == 4)
        #expect(events.last == .linkChanged(Link(index: 3, name: "veth0", isUp: true, operState: .up, mtu: 1500)))
    }

    @Test func newAddress4_usesLocalAndPermanentFlag() {
        let events = Self.events(after: "ip addr add 192.0.2.10/24 dev veth0")
        guard case .addressChanged(let a) = events.first, events.count == 1 else {
            Issue.record("got \(events)")
            return
        }
        #expect(a.key == Self.key(3, "192.0.2.10/24"))
        #expect(a.protocolID == 0 && !a.isRNMs)  // `ip` sends no IFA_PROTO
        #expect(a.flags == .permanent)
        #expect(a.validLifetime == .max && a.preferredLifetime == .max)
        #expect(!a.isTentative && !a.isTemporary)
    }

    @Test func newAddress4_pointToPoint_takesIFA_LOCALnotThePeer() {
        guard case .addressChanged(let a) = Self.events(after: "ip addr add 10.9.0.1 peer 10.9.0.2 dev veth0").first else {
            Issue.record("no event")
            return
        }
        #expect(a.key == Self.key(3, "10.9.0.1/32"))
    }

    @Test func newAddress6_nodadIsPublishable_dadIsTentative() {
        guard case .addressChanged(let nodad) = Self.events(after: "ip addr add 2001:db8::10/64 dev veth0 nodad").first,
            case .addressChanged(let dad) = Self.events(after: "ip addr add 2001:db8::11/64 dev veth0").first
        else {
            Issue.record("no events")
            return
        }
        #expect(nodad.key == Self.key(3, "2001:db8::10/64"))
        #expect(nodad.flags.contains(.noDAD) && !nodad.isTentative)
        #expect(Desired.isMember(nodad, policy: AddressPolicy()))
        #expect(dad.isTentative)
        #expect(!Desired.isMember(dad, policy: AddressPolicy()))
    }

    @Test func deleteAddress_givesTheKey() {
        #expect(Self.events(after: "ip addr del 192.0.2.10/24 dev veth0") == [.addressRemoved(Self.key(3, "192.0.2.10/24"))])
    }

    @Test func linkDown_flushesIPv6() {
        let events = Self.events(after: "ip link set veth0 down")
        let removed = events.compactMap { e -> AddressKey? in if case .addressRemoved(let k) = e { return k } else { return nil } }
        #expect(Set(removed.map(\.address.description)) == ["2001:db8::11", "2001:db8::10", "fe80::2415:20ff:fe4c:3c50"])
    }

    @Test func rename_keepsTheIndex() {
        let events = Self.events(after: "ip link set veth0 name wan9")
        #expect(events.first == .linkChanged(Link(index: 3, name: "wan9", isUp: false, operState: .down, mtu: 1500)))
    }

    @Test func deleteLink_givesItsIndex() {
        let events = Self.events(after: "ip link del wan9")
        #expect(events.contains(.linkRemoved(index: 3)))
        #expect(events.contains(.linkRemoved(index: 2)))
    }

    @Test func aBufferOfSeveralMessages_decodesInOrder() {
        let all = Self.recorded.flatMap(\.messages)
        let joined = all.reduce([], +)
        let one = RouteMessages.parse(joined)
        #expect(one.events == all.flatMap { RouteMessages.parse($0).events })
        #expect(one.malformed == 0)
    }

    @Test func truncatedOrCorrupt_isCountedNotCrashing() {
        let msg = Self.recorded.first { $0.command == "ip addr add 192.0.2.10/24 dev veth0" }!.messages[0]
        for cut in 0..<msg.count {
            let r = RouteMessages.parse(Array(msg[0..<cut]))
            #expect(r.events.isEmpty || cut == msg.count)
        }
        var bad = msg
        bad[24] = 0xFF  // first attribute's length now runs past the message
        bad[25] = 0x00
        let r = RouteMessages.parse(bad)
        #expect(r.events.isEmpty && r.malformed == 1)
        // Random bytes: never a crash.
        var x: UInt64 = 7
        for _ in 0..<2000 {
            var b = msg
            for _ in 0..<4 {
                x = x &* 6364136223846793005 &+ 1
                b[Int(x >> 33) % b.count] = UInt8(truncatingIfNeeded: x >> 17)
            }
            _ = RouteMessages.parse(b)
        }
    }
}
