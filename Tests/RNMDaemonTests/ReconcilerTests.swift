import Logging
@testable import RNMDaemon
import RNMCore
import RNMTesting
import Synchronization
import Testing

/// The reconciler on fakes: a recording firewall, the real bus, events injected by hand.
final class Harness: Sendable {
    let bus = EventBus<DaemonEvent>(capacity: 1000)
    let firewall: RecordingFirewall
    let reconciler: Reconciler
    let nextConfig: ConfigSource

    init(config: Config = Harness.config, kernel: [TableState] = []) {
        let firewall = RecordingFirewall(tables: kernel)
        let next = ConfigSource(config)
        self.firewall = firewall
        nextConfig = next
        reconciler = Reconciler(
            config: config, configPath: "/test/config.yaml", bus: bus, backend: firewall,
            logger: Logger(label: "test", factory: { _ in SwiftLogNoOpLogHandler() }),
            retry: RetryPolicy(initial: .milliseconds(5), maximum: .milliseconds(20)), clocks: .system,
            loadConfig: { _ throws(ConfigError) in try next.get() })
    }

    static let config = Config(
        table: "t",
        interfaces: [InterfaceConfig(name: "eth0", zone: "wan"), InterfaceConfig(name: "eth1", zone: "lan")])

    static func addr(_ index: Int32, _ text: String, _ flags: AddressFlags = .permanent) -> Address {
        let p = IPPrefix(text)!
        return Address(key: AddressKey(ifindex: index, address: p.address, prefixLength: p.length), flags: flags)
    }

    static let links = [Link(index: 2, name: "eth0"), Link(index: 3, name: "eth1")]

    func desired(_ observed: [Address], config: Config = Harness.config) -> TableState {
        Desired.compute(config: config, observed: ObservedState(links: Harness.links, addresses: observed))
    }

    func kernel(_ name: String = "t") -> TableState? { firewall.table(name) }
}

/// What the next reload will "read from disk".
final class ConfigSource: Sendable {
    private let value: Mutex<Result<Config, ConfigError>>
    init(_ config: Config) { value = Mutex(.success(config)) }
    func set(_ r: Result<Config, ConfigError>) { value.withLock { $0 = r } }
    func get() throws(ConfigError) -> Config { try value.withLock { $0 }.get() }
}

/// Polls `condition` until it holds or `timeout` passes.
func eventually(_ timeout: Duration = .seconds(5), _ condition: () -> Bool) async -> Bool {
    let deadline = ContinuousClock.now + timeout
    while ContinuousClock.now < deadline {
        if condition() { return true }
        try? await Task.sleep(for: .milliseconds(2))
    }
    return condition()
}

/// The reconciler on its own thread, as the daemon runs it.
final class Running: Sendable {
    let done = Completion()
    let error = Mutex<(any Error)?>(nil)

    init(_ reconciler: Reconciler) {
        Threads.detach(name: "test-reconcile") { [self] in
            do { try reconciler.run() } catch let e { error.withLock { $0 = e } }
            done.signal()
        }
    }

    /// Waits for `run()` to return; rethrows what it threw.
    func finish(within timeout: Duration = .seconds(5)) throws {
        #expect(done.wait(timeout: timeout), "the reconciler did not stop")
        if let e = error.withLock({ $0 }) { throw e }
    }
}

/// Runs the reconciler for the duration of `body`, then stops it through the bus and checks it stopped.
func withRunning(_ h: Harness, _ body: () async throws -> Void) async throws {
    let running = Running(h.reconciler)
    do {
        try await body()
    } catch {
        h.bus.close()
        try? running.finish()
        throw error
    }
    h.bus.close()
    try running.finish()
}

@Suite struct ReconcilerTests {
    @Test func start_readsBackThenWaitsForTheDump_thenCommitsOnce() async throws {
        // A table left by a previous run, with a stale element and a missing one.
        var old = Desired.compute(config: Harness.config, observed: ObservedState())
        old.elements["wan_v4"] = [.ipv4(IPv4Address("203.0.113.1")!): .never]
        let h = Harness(kernel: [old])
        let addrs = [Harness.addr(2, "198.51.100.7/24"), Harness.addr(3, "2001:db8::1/64")]
        try await withRunning(h) {
            // Events before the first dump must not be committed: the picture is incomplete.
            h.bus.send(.net([.addressChanged(addrs[0])]))
            try await Task.sleep(for: .milliseconds(50))
            #expect(h.firewall.transactions == 0)
            h.bus.send(.snapshot(links: Harness.links, addresses: addrs, overrun: false))
            #expect(await eventually { h.kernel() == h.desired(addrs) })
            // One whole-table load replaces the old table, stale element and all.
            #expect(h.firewall.loads.count == 1)
            #expect(h.firewall.commits.isEmpty)
            #expect(h.firewall.readBacks == 1)
        }
    }

    @Test func queuedEvents_areCoalescedIntoOneTransaction() async throws {
        let h = Harness()
        var addrs: [Address] = []
        h.bus.send(.snapshot(links: Harness.links, addresses: [], overrun: false))
        for i in 0..<200 {
            let a = Harness.addr(2, "10.0.\(i / 250).\(i % 250 + 1)/16")
            addrs.append(a)
            h.bus.send(.net([.addressChanged(a)]))
        }
        try await withRunning(h) {
            #expect(await eventually { h.kernel() == h.desired(addrs) })
            #expect(h.firewall.transactions == 1)
            #expect(h.firewall.loads[0].managed.elementCount == 200 + 2)
        }
    }

    @Test func renewsAndReplays_produceNoTransaction() async throws {
        let h = Harness()
        let a = Harness.addr(2, "198.51.100.7/24")
        try await withRunning(h) {
            h.bus.send(.snapshot(links: Harness.links, addresses: [a], overrun: false))
            #expect(await eventually { h.firewall.transactions == 1 })
            for _ in 0..<100 {
                h.bus.send(.net([.addressChanged(a)]))
                h.bus.send(.snapshot(links: Harness.links, addresses: [a], overrun: false))
                h.bus.send(.net([.linkChanged(Link(index: 2, name: "eth0", isUp: true, operState: .up))]))
            }
            h.bus.send(.net([.addressChanged(Harness.addr(3, "10.0.0.1/24"))]))  // a marker that does commit
            #expect(await eventually { h.firewall.transactions == 2 })
            try await Task.sleep(for: .milliseconds(30))
            #expect(h.firewall.transactions == 2)
            #expect(h.reconciler.counters.overruns == 0)
        }
    }

    @Test func overrunSnapshot_isCountedAndConverges() async throws {
        let h = Harness()
        try await withRunning(h) {
            h.bus.send(.snapshot(links: Harness.links, addresses: [Harness.addr(2, "198.51.100.7/24")], overrun: false))
            #expect(await eventually { h.firewall.transactions == 1 })
            let after = [Harness.addr(2, "198.51.100.8/24")]
            h.bus.send(.snapshot(links: Harness.links, addresses: after, overrun: true))
            #expect(await eventually { h.kernel() == h.desired(after) })
            #expect(h.reconciler.counters.overruns == 1)
            #expect(h.reconciler.counters.resyncs == 1)
            #expect(h.firewall.transactions == 2)
        }
    }

    @Test func failedLoad_isRetriedWithBackoff() async throws {
        let h = Harness()
        h.firewall.failNextLoads(3)
        let a = [Harness.addr(2, "198.51.100.7/24")]
        try await withRunning(h) {
            h.bus.send(.snapshot(links: Harness.links, addresses: a, overrun: false))
            #expect(await eventually { h.kernel() == h.desired(a) })
            #expect(h.reconciler.counters.transactionsFailed == 3)
            #expect(h.reconciler.counters.transactionsOK == 1)
            #expect(h.reconciler.counters.tableLoads == 1)
            #expect(h.firewall.readBacks == 1)  // a load replaces everything: nothing to read back
        }
    }

    @Test func failedCommit_isRetriedWithBackoff_afterReadingBack() async throws {
        let h = Harness()
        let a = [Harness.addr(2, "198.51.100.7/24")]
        try await withRunning(h) {
            h.bus.send(.snapshot(links: Harness.links, addresses: a, overrun: false))
            #expect(await eventually { h.kernel() == h.desired(a) })
            h.firewall.failNextCommits(3)
            let b = a + [Harness.addr(2, "198.51.100.8/24")]
            h.bus.send(.net([.addressChanged(b[1])]))
            #expect(await eventually { h.kernel() == h.desired(b) })
            #expect(h.reconciler.counters.transactionsFailed == 3)
            #expect(h.reconciler.counters.transactionsOK == 2)
            #expect(h.firewall.readBacks == 4)  // start + one per failure
        }
    }

    @Test func externalRemoval_makesOurDeleteFail_thenReadBackRepairs() async throws {
        let h = Harness()
        let a = Harness.addr(2, "198.51.100.7/24")
        let b = Harness.addr(2, "198.51.100.8/24")
        try await withRunning(h) {
            h.bus.send(.snapshot(links: Harness.links, addresses: [a, b], overrun: false))
            #expect(await eventually { h.kernel() == h.desired([a, b]) })
            // Someone deletes our element behind our back; then the address really goes away.
            h.firewall.mutate("t") { $0!.elements["wan_v4"]!.removeValue(forKey: .ipv4(IPv4Address("198.51.100.7")!)) }
            h.bus.send(.net([.addressRemoved(a.key), .addressChanged(Harness.addr(2, "198.51.100.9/24"))]))
            let want = h.desired([b, Harness.addr(2, "198.51.100.9/24")])
            #expect(await eventually { h.kernel() == want })
            #expect(h.reconciler.counters.transactionsFailed == 1)
        }
    }

    @Test func reload_badConfigKeepsTheOld_goodConfigConvergesInOneTransaction() async throws {
        let h = Harness()
        let a = [Harness.addr(2, "198.51.100.7/24"), Harness.addr(3, "10.0.0.1/24")]
        try await withRunning(h) {
            h.bus.send(.snapshot(links: Harness.links, addresses: a, overrun: false))
            #expect(await eventually { h.firewall.transactions == 1 })
            let issue = ConfigIssue(file: "/test/config.yaml", mark: SourceMark(line: 3, column: 7), path: "interfaces[0].zone", message: "bad")
            h.nextConfig.set(.failure(ConfigError([issue])))
            h.bus.send(.reload, weight: 0)
            #expect(await eventually { h.reconciler.counters.reloadsFailed == 1 })
            #expect(h.firewall.transactions == 1)
            #expect(h.reconciler.configGeneration == 1)

            var next = Harness.config
            next.interfaces.append(InterfaceConfig(name: "eth9", zone: "dmz"))
            next.interfaces[1].zone = "dmz"  // eth1 moves from lan to dmz
            h.nextConfig.set(.success(next))
            h.bus.send(.reload, weight: 0)
            #expect(await eventually { h.kernel() == h.desired(a, config: next) })
            // New zones change the structure: checked by a dry run, then one whole-table load.
            #expect(h.firewall.transactions == 2)
            #expect(h.firewall.loads.count == 2)
            #expect(h.firewall.dryRuns == 1)
            #expect(h.reconciler.configGeneration == 2)

            // The same config again: no transaction, generation unchanged.
            h.bus.send(.reload, weight: 0)
            #expect(await eventually { h.reconciler.counters.reloadsOK == 2 })
            try await Task.sleep(for: .milliseconds(20))
            #expect(h.firewall.transactions == 2)
            #expect(h.firewall.dryRuns == 1)
            #expect(h.reconciler.configGeneration == 2)

            // Only elements change (a declared set's elements): one element transaction, no load.
            var third = next
            third.sets = [DeclaredSet(name: "allow_v4", family: .v4)]
            h.nextConfig.set(.success(third))
            h.bus.send(.reload, weight: 0)
            #expect(await eventually { h.kernel() == h.desired(a, config: third) })
            var fourth = third
            fourth.sets[0].elements = [IPPrefix("192.0.2.1")!]
            h.nextConfig.set(.success(fourth))
            let loads = h.firewall.loads.count
            h.bus.send(.reload, weight: 0)
            #expect(await eventually { h.kernel() == h.desired(a, config: fourth) })
            #expect(h.firewall.loads.count == loads)
            #expect(h.firewall.commits.last?.add["allow_v4"]?.map(\.element) == [.ipv4(IPv4Address("192.0.2.1")!)])
        }
    }

    @Test(arguments: [true, false])
    func reload_refusedByTheKernel_revertsToThePreviousConfig(inDryRun: Bool) async throws {
        let h = Harness()
        let a = [Harness.addr(2, "198.51.100.7/24")]
        try await withRunning(h) {
            h.bus.send(.snapshot(links: Harness.links, addresses: a, overrun: false))
            #expect(await eventually { h.firewall.transactions == 1 })
            var next = Harness.config
            next.interfaces[0].zone = "uplink"
            h.nextConfig.set(.success(next))
            if inDryRun { h.firewall.failNextDryRuns(1) } else { h.firewall.failNextLoads(1) }
            h.bus.send(.reload, weight: 0)
            #expect(await eventually { h.reconciler.counters.reloadsFailed == 1 })
            try await Task.sleep(for: .milliseconds(50))
            #expect(h.kernel() == h.desired(a))
            #expect(h.firewall.loads.count == 1)
            #expect(h.reconciler.configGeneration == 1)
            #expect(h.reconciler.daemonState == .ready)
            // Later events still follow the old config.
            let b = a + [Harness.addr(2, "198.51.100.8/24")]
            h.bus.send(.net([.addressChanged(b[1])]))
            #expect(await eventually { h.kernel() == h.desired(b) })
        }
    }

    @Test func monitorFailure_stopsTheReconcilerWithAnError() {
        let h = Harness()
        let running = Running(h.reconciler)
        h.bus.send(.monitorFailed("boom"), weight: 0)
        #expect(throws: ReconcilerError.self) { try running.finish() }
    }

    @Test func closingTheBus_stopsPromptly_evenDuringBackoff() async throws {
        let h = Harness()
        h.firewall.failNextLoads(1000)
        let running = Running(h.reconciler)
        h.bus.send(.snapshot(links: Harness.links, addresses: [Harness.addr(2, "198.51.100.7/24")], overrun: false))
        #expect(await eventually { h.reconciler.counters.transactionsFailed >= 2 })
        let started = ContinuousClock.now
        h.bus.close()
        try running.finish()
        #expect(ContinuousClock.now - started < .seconds(1))
    }
}

/// Sends a control request through the bus and waits for the reconciler's answer.
func request(_ h: Harness, _ command: ControlCommand) async -> Result<JSON, ControlError>? {
    let box = Mutex<Result<JSON, ControlError>?>(nil)
    h.bus.send(.control(command, reply: { r in box.withLock { $0 = r } }), weight: 0)
    _ = await eventually { box.withLock { $0 != nil } }
    return box.withLock { $0 }
}

/// Drift: what the reconciler does when someone else changes the table (notified, or found by the audit).
@Suite struct DriftTests {
    static let addrs = [Harness.addr(2, "198.51.100.7/24")]
    static let foreign = SetElement.ipv4(IPv4Address("203.0.113.66")!)

    func converged(_ config: Config = Harness.config) async -> Harness {
        let h = Harness(config: config)
        h.bus.send(.snapshot(links: Harness.links, addresses: Self.addrs, overrun: false))
        return h
    }

    @Test func structuralDrift_loadsTheWholeTableAgain() async throws {
        let h = await converged()
        try await withRunning(h) {
            #expect(await eventually { h.firewall.loads.count == 1 })
            h.firewall.mutate("t") { $0 = nil }  // `nft delete table inet t`
            h.bus.send(.tableChanged(TableChange(kinds: ["table": 1, "set": 6], pid: 4242, process: "nft")))
            #expect(await eventually { h.firewall.loads.count == 2 })
            #expect(h.kernel() == h.desired(Self.addrs))
            #expect(h.reconciler.counters.drift == ["table": 1])
            #expect(await eventually { h.reconciler.counters.repairs == 1 })
        }
    }

    @Test func elementDrift_isRepairedWithAnElementTransaction() async throws {
        let h = await converged()
        try await withRunning(h) {
            #expect(await eventually { h.firewall.loads.count == 1 })
            h.firewall.mutate("t") { $0!.elements["wan_v4"]![Self.foreign] = .never }
            h.bus.send(.tableChanged(TableChange(kinds: ["element": 1], elementSets: ["wan_v4"], pid: 4242)))
            #expect(await eventually { h.kernel() == h.desired(Self.addrs) })
            #expect(h.firewall.loads.count == 1)
            #expect(h.firewall.commits.last?.remove == ["wan_v4": [Self.foreign]])
            #expect(h.reconciler.counters.drift == ["element": 1])
        }
    }

    @Test func elementsOfATemplateSet_areStructure() {
        let change = TableChange(kinds: ["element": 3], elementSets: ["trusted"])
        #expect(!change.isElementsOnly(managed: ["wan_v4"]))
        #expect(TableChange(kinds: ["element": 3], elementSets: ["wan_v4"]).isElementsOnly(managed: ["wan_v4"]))
        #expect(!TableChange.lostNotifications.isElementsOnly(managed: ["wan_v4"]))
    }

    @Test func reportMode_countsAndLeavesTheTableAlone() async throws {
        var config = Harness.config
        config.driftRepair = false
        let h = await converged(config)
        try await withRunning(h) {
            #expect(await eventually { h.firewall.loads.count == 1 })
            h.firewall.mutate("t") { $0!.elements["wan_v4"]![Self.foreign] = .never }
            h.bus.send(.tableChanged(TableChange(kinds: ["element": 1], elementSets: ["wan_v4"], pid: 4242)))
            #expect(await eventually { h.reconciler.counters.drift == ["element": 1] })
            try await Task.sleep(for: .milliseconds(30))
            #expect(h.kernel()?.elements["wan_v4"]?[Self.foreign] == .never)
            #expect(h.firewall.transactions == 1)
        }
    }

    @Test func lostNotifications_triggerAnAudit_thatFindsStructuralDrift() async throws {
        let h = await converged()
        try await withRunning(h) {
            #expect(await eventually { h.firewall.loads.count == 1 })
            h.firewall.setStructure("t", "table inet t {\n\tchain sneaky {\n\t}\n}\n")
            h.bus.send(.tableChanged(.lostNotifications))
            #expect(await eventually { h.firewall.loads.count == 2 })
            #expect(h.reconciler.counters.notificationsLost == 1)
            #expect(h.reconciler.counters.audits == 1)
            #expect(h.reconciler.counters.drift == ["structure": 1])
            let listed = try h.firewall.listStructure(table: "t")
            #expect(listed == h.firewall.loads[0].structure)
        }
    }

    @Test func periodicAudit_findsSilentElementDrift() async throws {
        var config = Harness.config
        config.auditIntervalMs = 20
        let h = await converged(config)
        try await withRunning(h) {
            #expect(await eventually { h.firewall.loads.count == 1 })
            h.firewall.mutate("t") { $0!.elements["wan_v4"] = [:] }  // nobody tells us
            #expect(await eventually { h.kernel() == h.desired(Self.addrs) })
            #expect(h.reconciler.counters.drift["element"] == 1)
            #expect(h.firewall.loads.count == 1)
        }
    }

    @Test func auditOff_findsNothing() async throws {
        var config = Harness.config
        config.auditIntervalMs = 0
        let h = await converged(config)
        try await withRunning(h) {
            #expect(await eventually { h.firewall.loads.count == 1 })
            h.firewall.mutate("t") { $0!.elements["wan_v4"] = [:] }
            try await Task.sleep(for: .milliseconds(60))
            #expect(h.reconciler.counters.audits == 0)
            #expect(h.kernel()?.elements["wan_v4"]?.isEmpty == true)
        }
    }

    @Test func plan_isEmptyInSync_andListsWhatTheConfigOnDiskWouldChange() async throws {
        let h = await converged()
        try await withRunning(h) {
            #expect(await eventually { h.firewall.loads.count == 1 })
            let inSync = try #require(await request(h, .plan)).get()
            #expect(inSync["in_sync"] == .bool(true))
            #expect(inSync["text"]?.string == "table inet t: in sync\n")

            var next = Harness.config
            next.sets = [DeclaredSet(name: "allow_v4", family: .v4, elements: [IPPrefix("192.0.2.1")!])]
            h.nextConfig.set(.success(next))
            let plan = try #require(await request(h, .plan)).get()
            #expect(plan["in_sync"] == .bool(false))
            #expect(plan["config_changed"] == .bool(true))
            let elements = plan["elements"]?.array ?? []
            #expect(elements == [.object([("op", .string("+")), ("object", .string("set allow_v4")), ("text", .string("192.0.2.1"))])])
            let structure = (plan["structure"]?.array ?? []).compactMap { $0["text"]?.string }
            #expect(structure == ["set allow_v4 {", "type ipv4_addr", "}"])
            // Planning changed nothing.
            #expect(h.firewall.transactions == 1)
            #expect(h.reconciler.configGeneration == 1)
        }
    }
}

/// The whole daemon wiring (monitor thread → bus → reconciler thread → backend) on fakes.
@Suite struct DaemonWiringTests {
    static let logger = Logger(label: "test", factory: { _ in SwiftLogNoOpLogHandler() })

    @Test func scriptedMonitor_drivesTheRealWiring_andShutdownStopsIt() async throws {
        let monitor = ScriptedMonitor(initial: [
            .snapshot(links: Harness.links, addresses: [Harness.addr(2, "198.51.100.7/24")], overrun: false, since: .now)
        ])
        let firewall = RecordingFirewall()
        let finished = Completion()
        let runtime = try DaemonRuntime(
            config: Harness.config, configPath: "/t.yaml", monitor: monitor, backend: firewall, logger: Self.logger,
            clocks: .system, loadConfig: { _ throws(ConfigError) in Harness.config }, onFinish: { finished.signal() })
        runtime.start()
        #expect(await eventually { firewall.transactions == 1 })
        monitor.emit(.events([.addressChanged(Harness.addr(3, "10.0.0.1/24"))]))
        monitor.emit(.snapshot(links: Harness.links, addresses: [Harness.addr(3, "10.0.0.1/24")], overrun: true, since: .now))
        let want = Desired.compute(
            config: Harness.config,
            observed: ObservedState(links: Harness.links, addresses: [Harness.addr(3, "10.0.0.1/24")]))
        #expect(await eventually { firewall.table("t") == want })
        runtime.reload()
        #expect(await eventually { runtime.counters.reloadsOK == 1 })
        #expect(!runtime.isFinished)
        runtime.shutdown()
        let result = try #require(runtime.wait(timeout: .seconds(2)))
        #expect(finished.wait(timeout: .seconds(1)))
        #expect(result.code == 0)
        #expect(result.counters.overruns == 1 && result.counters.resyncs == 1)
        #expect(result.counters.transactionsOK == firewall.transactions)
    }

    @Test func monitorThatCannotRun_makesTheDaemonExit1() throws {
        let monitor = ScriptedMonitor()
        monitor.fail("cannot open socket")
        let runtime = try DaemonRuntime(
            config: Harness.config, configPath: "/t.yaml", monitor: monitor, backend: RecordingFirewall(),
            logger: Self.logger, clocks: .system, loadConfig: { _ throws(ConfigError) in Harness.config })
        runtime.start()
        let result = try #require(runtime.wait(timeout: .seconds(5)))
        #expect(result.code == 1)
    }
}
