import Logging
@testable import RNMDaemon
import RNMCore
import RNMTesting
import Testing

/// The reconciler's network path on fakes: what it asks the kernel for, drift, refusals and their retry.
@Suite struct NetworkTests {
    static let config = Config(
        table: "t",
        interfaces: [
            InterfaceConfig(name: "eth0", zone: "wan", addresses: [IPPrefix("192.0.2.1/24")!], mtu: 1400),
            InterfaceConfig(name: "eth1", zone: "lan", addresses: [IPPrefix("192.168.1.1/24")!]),
        ],
        routes: [RouteConfig(to: IPPrefix("10.20.0.0/16")!, via: IPAddress("192.168.1.254")!)],
        forwarding: true)

    static func harness(_ net: RecordingNetwork) -> (EventBusBox, Reconciler) {
        let box = EventBusBox()
        let r = Reconciler(
            config: config, configPath: "/test/config.yaml", bus: box.bus, backend: RecordingFirewall(),
            logger: Logger(label: "test", factory: { _ in SwiftLogNoOpLogHandler() }), clocks: .system,
            loadConfig: { _ throws(ConfigError) in config }, network: net)
        return (box, r)
    }

    final class EventBusBox: Sendable { let bus = EventBus<DaemonEvent>(capacity: 1000) }

    static let links = [Link(index: 2, name: "eth0", isUp: false, mtu: 1500), Link(index: 3, name: "eth1", mtu: 1500)]

    @Test func appliesAddressesLinksRoutesAndSysctls_thenRestoresWhatOthersRemove() async throws {
        let net = RecordingNetwork()
        let (box, reconciler) = Self.harness(net)
        let running = Running(reconciler)
        box.bus.send(.snapshot(links: Self.links, addresses: [], overrun: false))
        // Routes wait for the kernel's list of rnm's routes.
        #expect(await eventually { net.calls.contains("addAddress 192.168.1.1/24 3") })
        #expect(!net.calls.contains { $0.hasPrefix("addRoute") })
        box.bus.send(.net([.routes([])]))
        #expect(await eventually { net.calls.contains("addRoute 10.20.0.0/16 via 192.168.1.254") })
        #expect(net.calls.contains("setLink 2 up=true mtu=1400"))
        #expect(net.calls.contains("addAddress 192.0.2.1/24 2"))
        #expect(net.calls.contains("sysctl net/ipv4/conf/eth0/forwarding=1"))
        #expect(net.calls.contains("sysctl net/ipv6/conf/all/forwarding=1"))
        let before = net.calls.count
        // The kernel confirms; nothing more is asked.
        let key0 = AddressKey(ifindex: 2, address: IPAddress("192.0.2.1")!, prefixLength: 24)
        box.bus.send(.net([.addressChanged(Address(key: key0, protocolID: NetworkMark.protocolID))]))
        try await Task.sleep(for: .milliseconds(50))
        #expect(net.calls.count == before)
        // Someone removes the address: it comes back, counted as drift.
        box.bus.send(.net([.addressRemoved(key0)]))
        #expect(await eventually { net.calls.filter { $0 == "addAddress 192.0.2.1/24 2" }.count == 2 })
        #expect(await eventually { reconciler.counters.drift["address"] == 1 })
        box.bus.close()
        try running.finish()
    }

    @Test func aRefusedRoute_isRetriedAfterEventsAndOnABackoffTimer_notInALoop() async throws {
        let net = RecordingNetwork()
        net.refuse("addRoute", code: NetworkError.ENETUNREACH)
        let (box, reconciler) = Self.harness(net)
        let running = Running(reconciler)
        box.bus.send(.snapshot(links: Self.links, addresses: [], overrun: false))
        box.bus.send(.net([.routes([])]))
        #expect(await eventually { net.calls.contains { $0.hasPrefix("addRoute") } })
        // Without events: tried again after 1 s, 2 s, 4 s… (a loop would be thousands by now; a slow test
        // machine may see one more timer than the sleep suggests).
        try await Task.sleep(for: .milliseconds(1500))
        #expect((2...4).contains(net.calls.filter { $0.hasPrefix("addRoute") }.count))
        // The gateway's network appears: tried again at once, and it works now.
        net.refuse("addRoute", code: nil)
        let before = net.calls.filter { $0.hasPrefix("addRoute") }.count
        box.bus.send(.net([.addressChanged(Address(key: AddressKey(ifindex: 3, address: IPAddress("192.168.1.1")!, prefixLength: 24)))]))
        #expect(await eventually { net.calls.filter { $0.hasPrefix("addRoute") }.count == before + 1 })
        // Applied: nothing more is tried.
        try await Task.sleep(for: .milliseconds(1200))
        #expect(net.calls.filter { $0.hasPrefix("addRoute") }.count == before + 1)
        box.bus.close()
        try running.finish()
    }

    @Test func forwardingTurnedOffBySomeoneElse_isTurnedOnAgainAtTheNextReloadOrAudit() async throws {
        let net = RecordingNetwork()
        let (box, reconciler) = Self.harness(net)
        let running = Running(reconciler)
        box.bus.send(.snapshot(links: Self.links, addresses: [], overrun: false))
        #expect(await eventually { net.calls.contains("sysctl net/ipv4/conf/eth1/forwarding=1") })
        net.overrideSysctl("net/ipv4/conf/eth1/forwarding", "0")
        // An address event does not read sysctls back (no file I/O on the hot path)…
        box.bus.send(.net([.addressChanged(Address(key: AddressKey(ifindex: 3, address: IPAddress("192.168.1.1")!, prefixLength: 24)))]))
        try await Task.sleep(for: .milliseconds(100))
        #expect(net.calls.filter { $0 == "sysctl net/ipv4/conf/eth1/forwarding=1" }.count == 1)
        // …a reload (even of an unchanged config) does, as the audit does: the value is written again.
        box.bus.send(.reload)
        #expect(await eventually { net.calls.filter { $0 == "sysctl net/ipv4/conf/eth1/forwarding=1" }.count == 2 })
        box.bus.close()
        try running.finish()
    }
}
