internal import CMnl
internal import CNftnl
internal import Glibc
public import RNMCore
internal import RNMNetlink
import Synchronization

/// An nftables error with the operation, the kernel's errno and which batch messages it refused.
public struct FirewallError: Error, CustomStringConvertible, Sendable {
    public var operation: String
    public var errno: Int32
    /// Descriptions of the refused messages ("add 3 elements to wan_v4").
    public var refused: [String]
    /// The kernel's extended ack text, if any.
    public var detail: String?

    public init(_ operation: String, errno: Int32, refused: [String] = [], detail: String? = nil) {
        self.operation = operation
        self.errno = errno
        self.refused = refused
        self.detail = detail
    }

    public var description: String {
        var s = "nftables: \(operation)"
        if !refused.isEmpty { s += " (\(refused.joined(separator: "; ")))" }
        s += ": \(String(cString: strerror(errno))) (\(errnoName(errno)))"
        if let d = detail, !d.isEmpty { s += ": \(d)" }
        return s
    }
}

func errnoName(_ e: Int32) -> String {
    switch e {
    case EPERM: "EPERM"
    case ENOENT: "ENOENT"
    case EEXIST: "EEXIST"
    case EINVAL: "EINVAL"
    case EBUSY: "EBUSY"
    case ENOMEM: "ENOMEM"
    case ENOSPC: "ENOSPC"
    case EMSGSIZE: "EMSGSIZE"
    case ENOBUFS: "ENOBUFS"
    case EOPNOTSUPP: "EOPNOTSUPP"
    case ETIMEDOUT: "ETIMEDOUT"
    case EAGAIN: "EAGAIN"
    case EPROTO: "EPROTO"
    default: "errno \(e)"
    }
}

/// Commits plans as libnftnl batches over one libmnl socket, and reads our table back.
///
/// Every `commit` is exactly one nftables transaction (batch begin … batch end): the kernel applies all of
/// it or none of it. Every message asks for an acknowledgement, and `commit` returns only when all of them
/// arrived. Only `inet <table>` is ever named in a message.
public final class NftablesBackend: FirewallBackend {
    private let socket: Mutex<MnlSocket>
    private let pageSize: Int
    /// Transactions sent (for the daemon's counters and tests).
    private let sent = Atomic<Int>(0)

    public init() throws {
        let sock = try MnlSocket(bus: NETLINK_NETFILTER, groups: 0)
        var one: Int32 = 1
        // Errors echo only the failing message's header, not its (up to 64 KiB) payload; extended acks on.
        _ = setsockopt(sock.fd, Int32(SOL_NETLINK), NETLINK_CAP_ACK, &one, socklen_t(4))
        _ = setsockopt(sock.fd, Int32(SOL_NETLINK), NETLINK_EXT_ACK, &one, socklen_t(4))
        sock.setReceiveBuffer(4 << 20)
        socket = Mutex(sock)
        pageSize = Int(sysconf(Int32(_SC_PAGESIZE)))
    }

    deinit { socket.withLock { $0.close() } }

    /// Every recv on the nftables socket uses this size. The kernel sizes dump messages after the largest
    /// recv it has seen on a socket (`max_recvmsg_len`), and a set-element dump packs one message's elements
    /// into a single nested attribute whose length field is 16 bits: with receive buffers much larger than
    /// 32 KiB, big sets come back with that length wrapped and elements silently cut off. Stay at 32 KiB.
    static let receiveBufferBytes = 32 * 1024

    /// Transactions committed by this backend.
    public var transactions: Int { sent.load(ordering: .relaxed) }

    /// The netlink port id of our socket (the kernel names it in NEWGEN notifications).
    public var portID: UInt32 { socket.withLock { $0.portID } }

    // MARK: - Commit

    public func commit(_ plan: Plan) throws {
        guard !plan.isEmpty else { return }
        try socket.withLock { sock in
            let batch = try Batch(pageSize: pageSize, firstSequence: sock.nextSequence())
            batch.build(plan)
            defer { sock.skipSequences(batch.messageCount) }
            try batch.send(on: sock)
        }
        sent.add(1, ordering: .relaxed)
    }

    // MARK: - Read back

    public func readBack(table: String, sets: Set<String>) throws -> TableState? {
        try socket.withLock { sock in
            guard try tableExists(table, sock) else { return nil }
            var state = TableState(name: table)
            let now = Self.monotonicNow()
            for spec in try dumpSets(table, sock) where sets.contains(spec.name) {
                state.sets[spec.name] = spec
                state.elements[spec.name] = Self.assemble(try dumpElements(table, spec, sock), spec: spec, now: now)
            }
            return state
        }
    }

    /// Sends one request (family inet) with string attributes; returns its sequence number.
    private func request(
        _ type: nf_tables_msg_types, dump: Bool, _ attributes: [(UInt16, String)], _ sock: MnlSocket
    ) throws -> UInt32 {
        var buf = [UInt8](repeating: 0, count: 1024)
        let seq = sock.nextSequence()
        let flags = dump ? NLM_F_DUMP | NLM_F_ACK : NLM_F_ACK
        let len = buf.withUnsafeMutableBytes { raw -> Int in
            let nlh = nftnl_nlmsg_build_hdr(
                raw.baseAddress!.assumingMemoryBound(to: CChar.self), UInt16(type.rawValue), UInt16(NFPROTO_INET),
                UInt16(flags), seq)!
            for (attr, value) in attributes { mnl_attr_put_strz(nlh, attr, value) }
            return Int(nlh.pointee.nlmsg_len)
        }
        try sock.send(Array(buf[0..<len]))
        return seq
    }

    private func tableExists(_ table: String, _ sock: MnlSocket) throws -> Bool {
        let seq = try request(NFT_MSG_GETTABLE, dump: false, [(UInt16(NFTA_TABLE_NAME.rawValue), table)], sock)
        var found = false
        try receiveUntilDone(sock, sequence: seq, dump: false) { nlh in
            if Int32(nlh.pointee.nlmsg_type) & 0xFF == Int32(NFT_MSG_NEWTABLE.rawValue) { found = true }
        } onError: { e in
            if e == ENOENT { return }
            throw FirewallError("read table inet \(table)", errno: e)
        }
        return found
    }

    private func dumpSets(_ table: String, _ sock: MnlSocket) throws -> [SetSpec] {
        let seq = try request(NFT_MSG_GETSET, dump: true, [(UInt16(NFTA_SET_TABLE.rawValue), table)], sock)
        var specs: [SetSpec] = []
        try receiveUntilDone(sock, sequence: seq, dump: true) { nlh in
            var name = ""
            var tableName = ""
            var keyType: UInt32 = 0
            var keyLen: UInt32 = 0
            var flags: UInt32 = 0
            var timeoutMs: UInt64? = nil
            Attributes.forEachInNfMessage(nlh) { a in
                switch Int(Attributes.type(a)) {
                case Int(NFTA_SET_TABLE.rawValue): tableName = Attributes.string(a)
                case Int(NFTA_SET_NAME.rawValue): name = Attributes.string(a)
                case Int(NFTA_SET_KEY_TYPE.rawValue): keyType = Attributes.u32(a) ?? 0
                case Int(NFTA_SET_KEY_LEN.rawValue): keyLen = Attributes.u32(a) ?? 0
                case Int(NFTA_SET_FLAGS.rawValue): flags = Attributes.u32(a) ?? 0
                case Int(NFTA_SET_TIMEOUT.rawValue): timeoutMs = Attributes.u64(a)
                default: break
                }
            }
            // Anonymous sets belong to rules; they are not ours to manage.
            guard tableName == table, !name.isEmpty, flags & UInt32(NFT_SET_ANONYMOUS.rawValue) == 0 else { return }
            specs.append(SetSpec(
                name: name, type: SetKeyType(nftTypeID: keyType, keyLength: keyLen), flags: SetFlags(rawValue: flags),
                timeoutMs: timeoutMs.flatMap { $0 == 0 ? nil : $0 }))
        } onError: { e in
            throw FirewallError("list sets of table inet \(table)", errno: e)
        }
        return specs
    }

    /// One element as the kernel lists it.
    struct RawElement: Hashable {
        var key: [UInt8]
        var isEnd: Bool
        /// Remaining lifetime in milliseconds, if the element has a timeout.
        var expiresInMs: UInt64?
    }

    /// A set's elements, read until two consecutive dumps agree.
    ///
    /// The kernel resumes a set dump by skipping the elements it already sent; if the set's hash table is
    /// resized in between (it is, right after a large insert), the order changes and a single dump repeats
    /// some elements and misses others. Seen here on 20,000-element sets. Two equal dumps in a row (keys and
    /// flags; remaining lifetimes keep ticking) mean no resize happened across them.
    private func dumpElements(_ table: String, _ spec: SetSpec, _ sock: MnlSocket) throws -> [RawElement] {
        func shape(_ xs: [RawElement]) -> Set<[UInt8]> { Set(xs.map { $0.key + [$0.isEnd ? 1 : 0] }) }
        var previous = try dumpElementsOnce(table, spec, sock)
        for _ in 0..<20 {
            let current = try dumpElementsOnce(table, spec, sock)
            if current.count == previous.count, shape(current) == shape(previous) { return current }
            previous = current
            var ts = timespec(tv_sec: 0, tv_nsec: 10_000_000)
            nanosleep(&ts, nil)
        }
        throw FirewallError("list elements of set \(spec.name): the kernel's dumps did not settle", errno: EAGAIN)
    }

    private func dumpElementsOnce(_ table: String, _ spec: SetSpec, _ sock: MnlSocket) throws -> [RawElement] {
        if case .other = spec.type { return [] }
        let seq = try request(
            NFT_MSG_GETSETELEM, dump: true,
            [(UInt16(NFTA_SET_ELEM_LIST_TABLE.rawValue), table), (UInt16(NFTA_SET_ELEM_LIST_SET.rawValue), spec.name)],
            sock)
        var out: [RawElement] = []
        try receiveUntilDone(sock, sequence: seq, dump: true) { nlh in
            Attributes.forEachInNfMessage(nlh) { a in
                guard Int(Attributes.type(a)) == Int(NFTA_SET_ELEM_LIST_ELEMENTS.rawValue) else { return }
                Attributes.forEachNested(a) { item in
                    var raw = RawElement(key: [], isEnd: false, expiresInMs: nil)
                    Attributes.forEachNested(item) { field in
                        switch Int(Attributes.type(field)) {
                        case Int(NFTA_SET_ELEM_KEY.rawValue):
                            Attributes.forEachNested(field) { data in
                                if Int(Attributes.type(data)) == Int(NFTA_DATA_VALUE.rawValue) {
                                    raw.key = Array(Attributes.bytes(data))
                                }
                            }
                        case Int(NFTA_SET_ELEM_FLAGS.rawValue):
                            raw.isEnd = (Attributes.u32(field) ?? 0) & UInt32(NFT_SET_ELEM_INTERVAL_END.rawValue) != 0
                        case Int(NFTA_SET_ELEM_EXPIRATION.rawValue):
                            raw.expiresInMs = Attributes.u64(field)
                        default:
                            break
                        }
                    }
                    if !raw.key.isEmpty { out.append(raw) }
                }
            }
        } onError: { e in
            throw FirewallError("list elements of set \(spec.name)", errno: e)
        }
        return out
    }

    /// Turns listed elements into our elements: plain keys, or for interval sets start/end pairs into ranges
    /// (an end without a start, left behind by an expiry, becomes an end marker to remove).
    static func assemble(_ raw: [RawElement], spec: SetSpec, now: UInt64) -> [SetElement: Deadline] {
        func deadline(_ r: RawElement) -> Deadline {
            r.expiresInMs.map { now &+ $0 * 1_000_000 } ?? .never
        }
        var out: [SetElement: Deadline] = [:]
        guard spec.isInterval, let family = spec.type.family else {
            for r in raw {
                if let e = SetElement(keyBytes: r.key, type: spec.type) { out[e] = deadline(r) }
            }
            return out
        }
        // Sort by key; at equal keys the end of one range comes before the start of the next.
        let sorted = raw.compactMap { r -> (IPv6Address, RawElement)? in
            guard let a = IPAddress(bytes: r.key) else { return nil }
            switch a {
            case .v4(let x): return (IPv6Address(high: 0, low: UInt64(x.value)), r)
            case .v6(let x): return (x, r)
            }
        }.sorted { ($0.0, $0.1.isEnd ? 0 : 1) < ($1.0, $1.1.isEnd ? 0 : 1) }
        func element(_ lo: IPv6Address, _ hi: IPv6Address) -> SetElement {
            family == .v4
                ? .ipv4Range(IPv4Address(UInt32(truncatingIfNeeded: lo.low)), IPv4Address(UInt32(truncatingIfNeeded: hi.low)))
                : .ipv6Range(lo, hi)
        }
        func end(_ k: IPv6Address) -> SetElement {
            family == .v4 ? .ipv4End(IPv4Address(UInt32(truncatingIfNeeded: k.low))) : .ipv6End(k)
        }
        let top = family == .v4 ? IPv6Address(high: 0, low: UInt64(UInt32.max)) : IPv6Address(high: .max, low: .max)
        var open: (IPv6Address, RawElement)? = nil
        for (k, r) in sorted {
            if r.isEnd {
                if let (s, sr) = open, let hi = k.predecessor, s <= hi {
                    out[element(s, hi)] = deadline(sr)
                    open = nil
                } else if k != IPv6Address(high: 0, low: 0) {
                    // An end at the zero address with nothing open is nft's own marker ("nothing below the
                    // first range"), which it adds when it loads interval elements; anything else is stray.
                    out[end(k)] = .never
                }
            } else {
                if let (s, sr) = open, let hi = k.predecessor { out[element(s, hi)] = deadline(sr) }
                open = (k, r)
            }
        }
        if let (s, sr) = open { out[element(s, top)] = deadline(sr) }
        return out
    }

    /// CLOCK_MONOTONIC in nanoseconds: the clock deadlines are kept on (the kernel's timeouts run on it too).
    public static func monotonicNow() -> UInt64 {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return UInt64(ts.tv_sec) * 1_000_000_000 + UInt64(ts.tv_nsec)
    }

    /// Receives replies for `sequence` until NLMSG_DONE (dumps) or the acknowledgement.
    private func receiveUntilDone(
        _ sock: MnlSocket, sequence: UInt32, dump: Bool,
        _ onMessage: (UnsafePointer<nlmsghdr>) throws -> Void,
        onError: (Int32) throws -> Void
    ) throws {
        var buffer = [UInt8](repeating: 0, count: Self.receiveBufferBytes)
        while true {
            let n = try sock.receive(&buffer)
            var finished = false
            try buffer.withUnsafeBytes { raw in
                var len = Int32(n)
                var nlh = raw.baseAddress!.assumingMemoryBound(to: nlmsghdr.self)
                while RouteMessages.messageFits(UnsafeRawPointer(nlh), len) {
                    defer { nlh = UnsafePointer(mnl_nlmsg_next(nlh, &len)!) }
                    guard nlh.pointee.nlmsg_seq == sequence else { continue }  // stale reply to something else
                    switch Int32(nlh.pointee.nlmsg_type) {
                    case NLMSG_DONE:
                        finished = true
                    case NLMSG_ERROR:
                        let err = UnsafeRawPointer(mnl_nlmsg_get_payload(nlh))!.loadUnaligned(as: nlmsgerr.self)
                        if err.error != 0 { try onError(-err.error) }
                        finished = true
                    default:
                        try onMessage(nlh)
                    }
                }
            }
            if finished { return }
        }
    }
}

/// One transaction being built: batch begin, the plan's messages, batch end.
private final class Batch {
    private let batch: OpaquePointer
    private var sequence: UInt32
    private let firstSequence: UInt32
    /// What each acknowledged message does, by sequence number.
    private var descriptions: [UInt32: String] = [:]
    private var setID: UInt32 = 0

    init(pageSize: Int, firstSequence: UInt32) throws {
        // Pages of 32 system pages; each message may run up to 64 KiB past a page (nested attribute limit).
        guard let b = nftnl_batch_alloc(UInt32(pageSize * 32), UInt32(Int(UInt16.max) + pageSize)) else {
            throw FirewallError("allocate batch", errno: ENOMEM)
        }
        batch = b
        sequence = firstSequence
        self.firstSequence = firstSequence
    }

    deinit { nftnl_batch_free(batch) }

    var messageCount: Int { Int(sequence &- firstSequence) }

    private var cursor: UnsafeMutablePointer<CChar> {
        nftnl_batch_buffer(batch)!.assumingMemoryBound(to: CChar.self)
    }

    private func advance() {
        sequence &+= 1
        _ = nftnl_batch_update(batch)
    }

    /// Appends one acknowledged message.
    private func message(
        _ type: nf_tables_msg_types, flags: Int32 = 0, _ what: String, _ payload: (UnsafeMutablePointer<nlmsghdr>) -> Void
    ) {
        let nlh = nftnl_nlmsg_build_hdr(cursor, UInt16(type.rawValue), UInt16(NFPROTO_INET), UInt16(flags | NLM_F_ACK), sequence)!
        payload(nlh)
        descriptions[sequence] = what
        advance()
    }

    func build(_ plan: Plan) {
        _ = nftnl_batch_begin(cursor, sequence)
        advance()
        if let old = plan.deleteTable {
            message(NFT_MSG_DELTABLE, "delete table inet \(old)") { mnl_attr_put_strz($0, UInt16(NFTA_TABLE_NAME.rawValue), old) }
        }
        if plan.createTable {
            message(NFT_MSG_NEWTABLE, flags: NLM_F_CREATE, "create table inet \(plan.table)") {
                mnl_attr_put_strz($0, UInt16(NFTA_TABLE_NAME.rawValue), plan.table)
            }
        }
        for name in plan.deleteSets {
            message(NFT_MSG_DELSET, "delete set \(name)") { nlh in
                mnl_attr_put_strz(nlh, UInt16(NFTA_SET_TABLE.rawValue), plan.table)
                mnl_attr_put_strz(nlh, UInt16(NFTA_SET_NAME.rawValue), name)
            }
        }
        for spec in plan.createSets {
            setID += 1
            let id = setID
            message(NFT_MSG_NEWSET, flags: NLM_F_CREATE, "create set \(spec.name)") { nlh in
                let s = nftnl_set_alloc()!
                defer { nftnl_set_free(s) }
                nftnl_set_set_str(s, UInt16(NFTNL_SET_TABLE.rawValue), plan.table)
                nftnl_set_set_str(s, UInt16(NFTNL_SET_NAME.rawValue), spec.name)
                nftnl_set_set_u32(s, UInt16(NFTNL_SET_FLAGS.rawValue), spec.flags.rawValue)
                nftnl_set_set_u32(s, UInt16(NFTNL_SET_KEY_TYPE.rawValue), spec.type.nftTypeID)
                nftnl_set_set_u32(s, UInt16(NFTNL_SET_KEY_LEN.rawValue), spec.type.keyLength)
                nftnl_set_set_u32(s, UInt16(NFTNL_SET_ID.rawValue), id)
                if let ms = spec.timeoutMs { nftnl_set_set_u64(s, UInt16(NFTNL_SET_TIMEOUT.rawValue), ms) }
                // nft's user data: the key's byte order (1 host, 2 big endian), so `nft list` prints keys right.
                var udata: [UInt8] = [UInt8(NFTNL_UDATA_SET_KEYBYTEORDER.rawValue), 4]
                let order: UInt32 = spec.type == .ifname ? 1 : 2
                withUnsafeBytes(of: order) { udata.append(contentsOf: $0) }
                udata.withUnsafeBytes { _ = nftnl_set_set_data(s, UInt16(NFTNL_SET_USERDATA.rawValue), $0.baseAddress, UInt32($0.count)) }
                nftnl_set_nlmsg_build_payload(nlh, s)
            }
        }
        for (name, elements) in plan.remove.sorted(by: { $0.key < $1.key }) where !elements.isEmpty {
            let wire = elements.flatMap { Self.wireElements(PlannedElement($0)) }
            elementMessages(
                NFT_MSG_DELSETELEM, flags: 0, table: plan.table, set: name, wire, count: elements.count,
                verb: "remove", preposition: "from")
        }
        for (name, elements) in plan.add.sorted(by: { $0.key < $1.key }) where !elements.isEmpty {
            let wire = elements.flatMap { Self.wireElements($0) }
            elementMessages(
                NFT_MSG_NEWSETELEM, flags: NLM_F_CREATE, table: plan.table, set: name, wire, count: elements.count,
                verb: "add", preposition: "to")
        }
        _ = nftnl_batch_end(cursor, sequence)
        advance()
    }

    /// What the kernel sees of one element: a key, maybe the interval-end flag, maybe a timeout.
    struct WireElement {
        var key: SetElement
        var isEnd: Bool
        var timeoutMs: UInt64?
    }

    /// A range becomes its start (carrying the timeout) and, unless it runs to the top of the address space,
    /// an end marker at the address after it: how nftables stores intervals.
    static func wireElements(_ e: PlannedElement) -> [WireElement] {
        switch e.element {
        case .ipv4Range(let lo, let hi):
            var out = [WireElement(key: .ipv4(lo), isEnd: false, timeoutMs: e.timeoutMs)]
            if hi.value != .max { out.append(WireElement(key: .ipv4(IPv4Address(hi.value + 1)), isEnd: true)) }
            return out
        case .ipv6Range(let lo, let hi):
            var out = [WireElement(key: .ipv6(lo), isEnd: false, timeoutMs: e.timeoutMs)]
            if let next = hi.successor { out.append(WireElement(key: .ipv6(next), isEnd: true)) }
            return out
        case .ipv4End(let a): return [WireElement(key: .ipv4(a), isEnd: true)]
        case .ipv6End(let a): return [WireElement(key: .ipv6(a), isEnd: true)]
        default: return [WireElement(key: e.element, isEnd: false, timeoutMs: e.timeoutMs)]
        }
    }

    /// As many messages as the 64 KiB nested-attribute limit requires; all inside this one transaction.
    ///
    /// Elements are encoded straight into the batch buffer (what libnftnl's element objects would produce,
    /// without an allocation per element): NFTA_LIST_ELEM { [FLAGS] KEY { DATA_VALUE } [TIMEOUT] }.
    private func elementMessages(
        _ type: nf_tables_msg_types, flags: Int32, table: String, set: String, _ elements: [WireElement],
        count: Int, verb: String, preposition: String
    ) {
        let what = "\(verb) \(count) element\(count == 1 ? "" : "s") \(preposition) \(set)"
        var next = 0
        while next < elements.count {
            message(type, flags: flags, what) { nlh in
                mnl_attr_put_strz(nlh, UInt16(NFTA_SET_ELEM_LIST_TABLE.rawValue), table)
                mnl_attr_put_strz(nlh, UInt16(NFTA_SET_ELEM_LIST_SET.rawValue), set)
                let nest = mnl_attr_nest_start(nlh, UInt16(NFTA_SET_ELEM_LIST_ELEMENTS.rawValue))!
                let nestStart = Int(nlh.pointee.nlmsg_len)
                var tail = UnsafeMutableRawPointer(mnl_nlmsg_get_payload_tail(nlh))!
                var written = 0
                while next < elements.count {
                    let size = Self.encodedSize(elements[next])
                    // The nest's length field is 16 bits; stay well inside it.
                    if written + size > Self.maxElementBytesPerMessage { break }
                    Self.encode(elements[next], at: tail)
                    tail += size
                    written += size
                    next += 1
                }
                nlh.pointee.nlmsg_len = UInt32(nestStart + written)
                mnl_attr_nest_end(nlh, nest)
            }
        }
    }

    static let maxElementBytesPerMessage = 60 * 1024

    private static let nested = UInt16(NLA_F_NESTED)

    private static func keyLength(_ e: SetElement) -> Int {
        if case .ipv4 = e { return 4 }
        return 16
    }

    /// Bytes one element takes: the list-element and key headers, optional flags and timeout, the key.
    private static func encodedSize(_ w: WireElement) -> Int {
        12 + keyLength(w.key) + (w.isEnd ? 8 : 0) + (w.timeoutMs != nil ? 12 : 0)
    }

    /// Writes one NFTA_LIST_ELEM at `p` (4-byte aligned, room for `encodedSize(w)` bytes).
    private static func encode(_ w: WireElement, at p: UnsafeMutableRawPointer) {
        let keyLength = keyLength(w.key)
        var off = 0
        func header(length: Int, type: UInt16) {
            p.storeBytes(of: UInt16(length), toByteOffset: off, as: UInt16.self)
            p.storeBytes(of: type, toByteOffset: off + 2, as: UInt16.self)
            off += 4
        }
        header(length: encodedSize(w), type: UInt16(NFTA_LIST_ELEM.rawValue) | nested)
        if w.isEnd {
            header(length: 8, type: UInt16(NFTA_SET_ELEM_FLAGS.rawValue))
            p.storeBytes(of: UInt32(NFT_SET_ELEM_INTERVAL_END.rawValue).bigEndian, toByteOffset: off, as: UInt32.self)
            off += 4
        }
        header(length: 8 + keyLength, type: UInt16(NFTA_SET_ELEM_KEY.rawValue) | nested)
        header(length: 4 + keyLength, type: UInt16(NFTA_DATA_VALUE.rawValue))
        let key = p + off
        switch w.key {
        case .ipv4(let a):
            key.storeBytes(of: a.value.bigEndian, as: UInt32.self)
        case .ipv6(let a):
            key.storeBytes(of: a.high.bigEndian, as: UInt64.self)
            key.storeBytes(of: a.low.bigEndian, toByteOffset: 8, as: UInt64.self)
        case .ifname(let name):
            key.initializeMemory(as: UInt8.self, repeating: 0, count: 16)
            var i = 0
            for b in name.utf8.prefix(15) {
                key.storeBytes(of: b, toByteOffset: i, as: UInt8.self)
                i += 1
            }
        default:
            preconditionFailure("wire elements carry plain keys")
        }
        off += keyLength
        if let ms = w.timeoutMs {
            header(length: 12, type: UInt16(NFTA_SET_ELEM_TIMEOUT.rawValue))
            p.storeBytes(of: ms.bigEndian, toByteOffset: off, as: UInt64.self)
        }
    }

    /// Sends the batch in one sendmsg and collects one acknowledgement per message.
    func send(on sock: MnlSocket) throws {
        let count = nftnl_batch_iovec_len(batch)
        var iov = [iovec](repeating: iovec(), count: Int(count))
        iov.withUnsafeMutableBufferPointer { nftnl_batch_iovec(batch, OpaquePointer($0.baseAddress), UInt32(count)) }
        let total = iov.reduce(0) { $0 + $1.iov_len }
        // The whole transaction travels in one datagram: make room for it.
        if total > 200_000 { sock.setSendBuffer(total + 4096) }
        var addr = sockaddr_nl()
        addr.nl_family = sa_family_t(AF_NETLINK)
        let n = iov.withUnsafeMutableBufferPointer { iovs in
            withUnsafeMutablePointer(to: &addr) { ap in
                var msg = msghdr()
                msg.msg_name = UnsafeMutableRawPointer(ap)
                msg.msg_namelen = socklen_t(MemoryLayout<sockaddr_nl>.size)
                msg.msg_iov = iovs.baseAddress
                msg.msg_iovlen = Int(count)
                while true {
                    let r = sendmsg(sock.fd, &msg, 0)
                    if r < 0 && errno == EINTR { continue }
                    return r
                }
            }
        }
        guard n == total else { throw FirewallError("send transaction", errno: n < 0 ? errno : EMSGSIZE) }
        try collectAcks(sock)
    }

    private func collectAcks(_ sock: MnlSocket) throws {
        var pending = Set(descriptions.keys)
        var refused: [String] = []
        var firstErrno: Int32 = 0
        var detail: String? = nil
        var buffer = [UInt8](repeating: 0, count: NftablesBackend.receiveBufferBytes)
        var waited = false
        while !pending.isEmpty {
            // The kernel processes the batch inside sendmsg, so the acks are normally queued already.
            let n = buffer.withUnsafeMutableBytes { recv(sock.fd, $0.baseAddress, $0.count, Int32(MSG_DONTWAIT)) }
            if n < 0 {
                if errno == EINTR { continue }
                if errno == EAGAIN {
                    if firstErrno != 0 || waited { break }
                    var p = pollfd(fd: sock.fd, events: Int16(POLLIN), revents: 0)
                    if poll(&p, 1, 5000) == 0 { waited = true }
                    continue
                }
                throw FirewallError("receive acknowledgements", errno: errno)
            }
            buffer.withUnsafeBytes { raw in
                var len = Int32(n)
                var nlh = raw.baseAddress!.assumingMemoryBound(to: nlmsghdr.self)
                while RouteMessages.messageFits(UnsafeRawPointer(nlh), len) {
                    defer { nlh = UnsafePointer(mnl_nlmsg_next(nlh, &len)!) }
                    guard Int32(nlh.pointee.nlmsg_type) == NLMSG_ERROR else { continue }
                    let err = UnsafeRawPointer(mnl_nlmsg_get_payload(nlh))!.loadUnaligned(as: nlmsgerr.self)
                    let seq = err.msg.nlmsg_seq
                    guard pending.remove(seq) != nil else { continue }
                    if err.error != 0 {
                        if firstErrno == 0 { firstErrno = -err.error }
                        refused.append(descriptions[seq] ?? "message \(seq)")
                        if detail == nil { detail = Self.extackMessage(nlh) }
                    }
                }
            }
        }
        if firstErrno != 0 {
            throw FirewallError("transaction refused, nothing changed", errno: firstErrno, refused: refused, detail: detail)
        }
        if !pending.isEmpty {
            throw FirewallError("transaction not acknowledged (\(pending.count) of \(descriptions.count) messages)", errno: ETIMEDOUT)
        }
    }

    /// NLMSGERR_ATTR_MSG from an extended ack (NETLINK_CAP_ACK: the echoed message is only a header).
    private static func extackMessage(_ nlh: UnsafePointer<nlmsghdr>) -> String? {
        guard nlh.pointee.nlmsg_flags & UInt16(NLM_F_ACK_TLVS) != 0 else { return nil }
        let start = UnsafeRawPointer(mnl_nlmsg_get_payload(nlh))! + Attributes.mnlAlign(MemoryLayout<nlmsgerr>.size)
        let end = UnsafeRawPointer(nlh) + Int(nlh.pointee.nlmsg_len)
        var text: String? = nil
        Attributes.forEach(from: start, to: end) { a in
            if Int(Attributes.type(a)) == Int(NLMSGERR_ATTR_MSG.rawValue) { text = Attributes.string(a) }
        }
        return text
    }
}

extension NftablesBackend {
    public func load(_ table: RenderedTable, dryRun: Bool) throws {
        try NftScript.load(table, dryRun: dryRun)
        if !dryRun { sent.add(1, ordering: .relaxed) }
    }

    public func listStructure(table: String) throws -> String? {
        try NftScript.listStructure(table: table)
    }
}

extension NftablesBackend {
    /// Loads `table` (without elements: they do not show in the listing) into a fresh network namespace on
    /// a short-lived thread and lists it there. Needs CAP_SYS_ADMIN (unshare).
    public func canonicalStructure(_ table: RenderedTable) throws -> String {
        try ScratchNamespace.run { () throws(NftScriptError) -> String in
            try NftScript.load(table, dryRun: false)
            return try NftScript.listStructure(table: table.table) ?? ""
        }
    }
}
