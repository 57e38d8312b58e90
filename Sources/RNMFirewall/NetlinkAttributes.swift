internal import CMnl

/// Iteration over netlink attributes with libmnl's functions (its `mnl_attr_for_each*` are macros).
enum Attributes {
    /// Calls `body` for each attribute in `[start, end)`.
    static func forEach(from start: UnsafeRawPointer, to end: UnsafeRawPointer, _ body: (UnsafePointer<nlattr>) -> Void) {
        var cur = start.assumingMemoryBound(to: nlattr.self)
        while true {
            let remaining = end - UnsafeRawPointer(cur)
            guard remaining > 0, mnl_attr_ok(cur, Int32(remaining)) else { return }
            body(cur)
            cur = UnsafePointer(mnl_attr_next(cur)!)
        }
    }

    /// The attributes nested in `attr`.
    static func forEachNested(_ attr: UnsafePointer<nlattr>, _ body: (UnsafePointer<nlattr>) -> Void) {
        let start = UnsafeRawPointer(mnl_attr_get_payload(attr))!
        forEach(from: start, to: start + Int(mnl_attr_get_payload_len(attr)), body)
    }

    /// The attributes of an nfnetlink message (after the nfgenmsg header).
    static func forEachInNfMessage(_ nlh: UnsafePointer<nlmsghdr>, _ body: (UnsafePointer<nlattr>) -> Void) {
        let payload = UnsafeRawPointer(mnl_nlmsg_get_payload(nlh))!
        let start = payload + mnlAlign(MemoryLayout<nfgenmsg>.size)
        let end = UnsafeRawPointer(nlh) + Int(nlh.pointee.nlmsg_len)
        forEach(from: start, to: end, body)
    }

    static func type(_ attr: UnsafePointer<nlattr>) -> UInt16 { mnl_attr_get_type(attr) }

    static func bytes(_ attr: UnsafePointer<nlattr>) -> UnsafeRawBufferPointer {
        UnsafeRawBufferPointer(start: mnl_attr_get_payload(attr), count: Int(mnl_attr_get_payload_len(attr)))
    }

    static func string(_ attr: UnsafePointer<nlattr>) -> String {
        let b = bytes(attr)
        let end = b.firstIndex(of: 0) ?? b.count
        return String(decoding: b[0..<end], as: UTF8.self)
    }

    /// Big-endian u32 (nfnetlink attributes are network order).
    static func u32(_ attr: UnsafePointer<nlattr>) -> UInt32? {
        guard mnl_attr_get_payload_len(attr) >= 4 else { return nil }
        return UInt32(bigEndian: mnl_attr_get_u32(attr))
    }

    static func u64(_ attr: UnsafePointer<nlattr>) -> UInt64? {
        guard mnl_attr_get_payload_len(attr) >= 8 else { return nil }
        return UInt64(bigEndian: mnl_attr_get_u64(attr))
    }

    static func mnlAlign(_ n: Int) -> Int { (n + 3) & ~3 }
}
