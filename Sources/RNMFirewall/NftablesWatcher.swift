internal import CMnl
internal import CNftnl
internal import CRNMShims
internal import Glibc
public import RNMCore
internal import RNMNetlink
import Synchronization

/// Listens to nftables notifications (NFNLGRP_NFTABLES) and reports every transaction by someone else that
/// touched our table.
///
/// The kernel sends a transaction's object notifications, then a NEWGEN notice naming the process and
/// thread (task pid) that committed it. Notifications are gathered per transaction and judged at NEWGEN:
/// the transaction is ours when that pid is one of `isOwn`'s (the reconciler thread commits every element
/// batch and every whole-table load). ENOBUFS (the kernel dropped notifications) is reported as
/// `TableChange.lostNotifications`: the reconciler then audits the table.
///
/// Runs on a dedicated thread (`run` blocks); `stop()` and `setTable` may be called from any thread.
public final class NftablesWatcher: Sendable {
    private let wake: Int32
    private let stopped = Atomic<Bool>(false)
    private let table: Mutex<String>
    private let receiveBuffer: Int

    public init(table: String, receiveBuffer: Int = 8 << 20) throws {
        let fd = eventfd(0, Int32(EFD_CLOEXEC) | Int32(EFD_NONBLOCK))
        guard fd >= 0 else { throw NetlinkError("eventfd", errno: errno) }
        wake = fd
        self.table = Mutex(table)
        self.receiveBuffer = receiveBuffer
    }

    deinit { close(wake) }

    /// The table to watch (the config's `table:` can change on reload).
    public func setTable(_ name: String) { table.withLock { $0 = name } }

    public func stop() {
        stopped.store(true, ordering: .releasing)
        var one: UInt64 = 1
        _ = write(wake, &one, 8)
    }

    /// Blocks until `stop()`. `isOwn(pid)`: whether a committing task is one of ours. `report` is called on
    /// this thread once per foreign transaction that touched the table, and on lost notifications.
    /// `ready` is called once the subscription is in place.
    public func run(
        isOwn: (UInt32) -> Bool, ready: () -> Void = {}, report: (TableChange) -> Void
    ) throws {
        let group = UInt32(NFNLGRP_NFTABLES.rawValue)
        let sock = try MnlSocket(bus: NETLINK_NETFILTER, groups: 1 << (group - 1))
        defer { sock.close() }
        sock.setReceiveBuffer(receiveBuffer)
        ready()
        var buffer = [UInt8](repeating: 0, count: 256 * 1024)
        var fds = [pollfd(fd: sock.fd, events: Int16(POLLIN), revents: 0), pollfd(fd: wake, events: Int16(POLLIN), revents: 0)]
        var pending = TableChange()
        var touched = false
        while !stopped.load(ordering: .acquiring) {
            let n = buffer.withUnsafeMutableBytes { recv(sock.fd, $0.baseAddress, $0.count, Int32(MSG_DONTWAIT)) }
            if n > 0 {
                let ours = table.withLock { $0 }
                buffer.withUnsafeBytes { raw in
                    Self.parse(UnsafeRawBufferPointer(rebasing: raw[0..<n]), table: ours) { message in
                        switch message {
                        case .object(let kind, let set):
                            pending.kinds[kind, default: 0] += 1
                            if kind == "element", let set { pending.elementSets.insert(set) }
                            touched = true
                        case .generation(let pid, let process):
                            if touched && !isOwn(pid) {
                                pending.pid = pid
                                pending.process = process
                                report(pending)
                            }
                            pending = TableChange()
                            touched = false
                        }
                    }
                }
                continue
            }
            if n == 0 { continue }
            switch errno {
            case EAGAIN:
                fds[0].revents = 0
                fds[1].revents = 0
                _ = poll(&fds, 2, -1)
            case EINTR:
                continue
            case ENOBUFS:
                pending = TableChange()
                touched = false
                report(.lostNotifications)
            default:
                var ts = timespec(tv_sec: 0, tv_nsec: 100_000_000)
                nanosleep(&ts, nil)
            }
        }
    }

    enum Message: Equatable {
        /// A notification about an object of `table` (kind as in `TableChange.kinds`; the set for elements).
        case object(kind: String, set: String?)
        case generation(pid: UInt32, process: String?)
    }

    /// Parses a datagram of nftables notifications; calls `body` for NEWGEN notices and for notifications
    /// about `table` (family inet).
    static func parse(_ bytes: UnsafeRawBufferPointer, table: String, _ body: (Message) -> Void) {
        guard var cur = bytes.baseAddress.map({ UnsafeRawPointer($0) }) else { return }
        var remaining = Int32(bytes.count)
        while remaining >= Int32(MemoryLayout<nlmsghdr>.size) {
            let nlh = cur.assumingMemoryBound(to: nlmsghdr.self)
            guard mnl_nlmsg_ok(nlh, remaining) else { return }
            defer {
                let next = mnl_nlmsg_next(nlh, &remaining)!
                cur = UnsafeRawPointer(next)
            }
            let type = Int32(nlh.pointee.nlmsg_type)
            guard type >> 8 == NFNL_SUBSYS_NFTABLES,
                Int(nlh.pointee.nlmsg_len) >= MemoryLayout<nlmsghdr>.size + MemoryLayout<nfgenmsg>.size
            else { continue }
            let msg = UInt32(type & 0xFF)
            let family = UnsafeRawPointer(mnl_nlmsg_get_payload(nlh))!.load(as: UInt8.self)
            if msg == NFT_MSG_NEWGEN.rawValue {
                var pid: UInt32 = 0
                var process: String? = nil
                Attributes.forEachInNfMessage(nlh) { a in
                    switch UInt32(Attributes.type(a)) {
                    case NFTA_GEN_PROC_PID.rawValue: pid = Attributes.u32(a) ?? 0
                    case NFTA_GEN_PROC_NAME.rawValue: process = Attributes.string(a)
                    default: break
                    }
                }
                body(.generation(pid: pid, process: process))
                continue
            }
            guard family == UInt8(NFPROTO_INET) else { continue }
            // Attribute 1 is the table name in table, chain, rule, set, element, object and flowtable messages;
            // attribute 2 is the set name in element messages.
            var name: String? = nil
            var set: String? = nil
            Attributes.forEachInNfMessage(nlh) { a in
                switch Attributes.type(a) & 0x7FFF {
                case 1: name = Attributes.string(a)
                case 2: set = Attributes.string(a)
                default: break
                }
            }
            guard name == table else { continue }
            let kind: String
            switch msg {
            case NFT_MSG_NEWTABLE.rawValue, NFT_MSG_DELTABLE.rawValue: kind = "table"
            case NFT_MSG_NEWCHAIN.rawValue, NFT_MSG_DELCHAIN.rawValue: kind = "chain"
            case NFT_MSG_NEWRULE.rawValue, NFT_MSG_DELRULE.rawValue: kind = "rule"
            case NFT_MSG_NEWSET.rawValue, NFT_MSG_DELSET.rawValue: kind = "set"
            case NFT_MSG_NEWSETELEM.rawValue, NFT_MSG_DELSETELEM.rawValue: kind = "element"
            case NFT_MSG_NEWOBJ.rawValue, NFT_MSG_DELOBJ.rawValue: kind = "object"
            case NFT_MSG_NEWFLOWTABLE.rawValue, NFT_MSG_DELFLOWTABLE.rawValue: kind = "flowtable"
            default: kind = "other"
            }
            body(.object(kind: kind, set: kind == "element" ? set : nil))
        }
    }
}
