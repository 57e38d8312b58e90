// rnm-bench: in-process measurements that need no daemon. Prints one JSON object per line.
//
//   rnm-bench bulk COUNT RUNS      (root, in a throwaway namespace) commit COUNT elements into an empty set
//                                  through the firewall module, one transaction; RUNS times.
//   rnm-bench hotpath SIZE EVENTS  the reconciler core's cost per address event when it already tracks SIZE
//                                  addresses (apply + plan + commit bookkeeping, no I/O).
//   rnm-bench resync LINKS ADDRS   the core's cost to fold a full dump of ADDRS addresses on LINKS links into
//                                  a state that held a different set of the same size, and plan the diff.
import Glibc
import RNMCore
import RNMFirewall

func now() -> UInt64 {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return UInt64(ts.tv_sec) * 1_000_000_000 + UInt64(ts.tv_nsec)
}

func percentile(_ xs: [Double], _ q: Double) -> Double {
    let s = xs.sorted()
    return s.isEmpty ? -1 : s[Int(q * Double(s.count - 1))]
}

func ms(_ ns: UInt64) -> Double { Double(ns) / 1e6 }

func v4(_ i: Int) -> IPv4Address { IPv4Address(0x0A00_0000 | UInt32(i)) }

func bulk(count: Int, runs: Int) throws {
    let backend = try NftablesBackend()
    var times: [Double] = []
    for run in 0..<runs {
        let table = "bench\(run)"
        let spec = SetSpec(name: "s", type: .ipv4Addr)
        try backend.commit(Plan(table: table, createTable: true, createSets: [spec]))
        let elements = (0..<count).map { PlannedElement(.ipv4(v4($0))) }
        let t0 = now()
        try backend.commit(Plan(table: table, add: ["s": elements]))
        times.append(ms(now() - t0))
        if getenv("RNM_BENCH_SLEEP") != nil { sleep(1) }
        let back = try backend.readBack(table: table, sets: ["s"])
        guard back?.elements["s"]?.count == count else { print("read back \(back?.elements["s"]?.count ?? -1) of \(count) elements"); exit(1) }
        if getenv("RNM_BENCH_KEEP") != nil { return }
        try backend.commit(Plan(table: table, deleteTable: table))
    }
    print("{\"bench\": \"bulk\", \"elements\": \(count), \"runs\": \(runs), \"median_ms\": \(percentile(times, 0.5)), \"min_ms\": \(percentile(times, 0)), \"max_ms\": \(percentile(times, 1))}")
}

func makeState(size: Int, links: Int) -> ReconcileState {
    let config = Config(table: "t", interfaces: (0..<links).map { InterfaceConfig(name: "if\($0)", zone: "z\($0 % 10)") })
    var state = ReconcileState(config: config)
    state.setApplied(nil)
    let ls = (0..<links).map { Link(index: Int32($0 + 1), name: "if\($0)") }
    let addrs = (0..<size).map {
        Address(key: AddressKey(ifindex: Int32($0 % links + 1), address: .v4(v4($0)), prefixLength: 32))
    }
    state.apply(.snapshot(links: ls, addresses: addrs))
    state.committed(state.plan())
    return state
}

func hotpath(size: Int, events: Int) {
    var state = makeState(size: size, links: 100)
    var samples: [Double] = []
    samples.reserveCapacity(events)
    for i in 0..<events {
        let a = Address(key: AddressKey(ifindex: 1, address: .v4(IPv4Address(0xC612_0000 | UInt32(i / 2))), prefixLength: 32))
        let t0 = now()
        state.apply(i % 2 == 0 ? .addressChanged(a) : .addressRemoved(a.key))
        let plan = state.plan()
        state.committed(plan)
        samples.append(Double(now() - t0) / 1000)
        precondition(plan.addedCount + plan.removedCount == 1)
    }
    print("{\"bench\": \"hotpath\", \"tracked_addresses\": \(size), \"events\": \(events), \"p50_us\": \(percentile(samples, 0.5)), \"p99_us\": \(percentile(samples, 0.99))}")
}

func resync(links: Int, addrs: Int) {
    var state = makeState(size: addrs, links: links)
    let ls = (0..<links).map { Link(index: Int32($0 + 1), name: "if\($0)") }
    // The dump after the overrun: every address changed.
    let fresh = (0..<addrs).map {
        Address(key: AddressKey(ifindex: Int32($0 % links + 1), address: .v4(v4($0 + addrs)), prefixLength: 32))
    }
    let t0 = now()
    state.apply(.snapshot(links: ls, addresses: fresh))
    let plan = state.plan()
    state.committed(plan)
    let took = ms(now() - t0)
    print("{\"bench\": \"resync_core\", \"links\": \(links), \"addresses\": \(addrs), \"added\": \(plan.addedCount), \"removed\": \(plan.removedCount), \"ms\": \(took)}")
}

let args = Array(CommandLine.arguments.dropFirst())
func arg(_ i: Int, _ d: Int) -> Int { i < args.count ? Int(args[i]) ?? d : d }
switch args.first {
case "bulk":
    do { try bulk(count: arg(1, 100_000), runs: arg(2, 5)) } catch {
        print("bulk failed: \(error)")
        exit(1)
    }
case "hotpath": hotpath(size: arg(1, 0), events: arg(2, 20_000))
case "resync": resync(links: arg(1, 1000), addrs: arg(2, 10_000))
default:
    print("usage: rnm-bench bulk COUNT RUNS | hotpath SIZE EVENTS | resync LINKS ADDRS")
    exit(2)
}
