// An rnmd plugin in Swift: when started, makes its contribution to one granted set exactly the configured
// addresses (set_replace). Config: {"set": "allow_v4", "addresses": ["192.0.2.1", "10.0.0.0/8"]}
// Support.swift has the generic glue: build_info, C strings, a heap box, the error buffer.
import CRNMPlugin
import FoundationEssentials

private struct Config: Decodable { let set: String; let addresses: [String] }
private struct Instance { let api: UnsafePointer<rnm_host_api>, host: OpaquePointer, set: String, addrs: [rnm_addr] }

// nonisolated(unsafe) is safe: the descriptor is written once, before the host can see it, then only read.
private nonisolated(unsafe) let descriptor = heap(rnm_plugin_descriptor(
    struct_size: UInt32(MemoryLayout<rnm_plugin_descriptor>.size), magic: RNM_PLUGIN_MAGIC,
    abi_major: UInt32(RNM_ABI_MAJOR), abi_minor: UInt32(RNM_ABI_MINOR),
    name: cString("example-swift"), version: cString("1.0.0"), build_info: cString(buildInfo),
    create: { api, host, json, out, err, len in
        guard let api, let host, let json, let out else { return fail("missing argument", err, len) }
        guard let config = try? JSONDecoder().decode(Config.self, from: Data(String(cString: json).utf8)) else {
            return fail("config: expected {\"set\": \"<set>\", \"addresses\": [\"<address>\", ...]}", err, len)
        }
        var addrs = [rnm_addr](repeating: rnm_addr(), count: config.addresses.count)
        for (i, text) in config.addresses.enumerated() where api.pointee.addr_parse(text, &addrs[i]) != RNM_OK {
            return fail("config: bad address \"\(text)\" in \"addresses\"", err, len)
        }
        out.pointee = OpaquePointer(heap(Instance(api: api, host: host, set: config.set, addrs: addrs)))
        return RNM_OK
    },
    start: { p in  // set_replace may be called from start(); the host copies the addresses before returning
        let i = UnsafeMutablePointer<Instance>(p!).pointee
        let rc = i.api.pointee.set_replace(i.host, i.set, i.addrs, i.addrs.count, 0)
        let message = "replaced the contribution to \(i.set) with \(i.addrs.count) addresses: status \(rc)"
        i.api.pointee.log(i.host, rc == RNM_OK ? RNM_LOG_INFO : RNM_LOG_ERR, message)
        i.api.pointee.set_health(i.host, rc == RNM_OK ? RNM_HEALTH_OK : RNM_HEALTH_FAILED, message)
        return RNM_OK
    },
    reconfigure: nil,  // a changed config restarts the instance
    stop: { _ in },  // no threads to join
    destroy: { p in UnsafeMutablePointer<Instance>(p!).deinitialize(count: 1).deallocate() }))

/// The plugin's only exported symbol (exports.map hides everything else).
@c @implementation
public func rnm_plugin_entry_v1(_ major: UInt32, _ minor: UInt32) -> UnsafePointer<rnm_plugin_descriptor>? {
    major == UInt32(RNM_ABI_MAJOR) ? UnsafePointer(descriptor) : nil
}
