import RNMCore
import Testing

@Suite struct JSONTests {
    @Test(arguments: [
        "null", "true", "false", "0", "-1", "1.5", "1e3", "\"a\\u00e9\\n\\\"\"", "[]", "{}", "[1,[2,[3]]]",
        "{\"a\":1,\"b\":[true,null]}", "\"\\ud83d\\ude00\"",
    ])
    func roundTrips(_ text: String) throws {
        let v = try JSON.parse(text)
        #expect(try JSON.parse(v.text) == v)
    }

    @Test(arguments: [
        ("", "unexpected end"), ("{", "expected a key"), ("[1,]", "expected a value"), ("01", "leading zero"),
        ("{\"a\":1,\"a\":2}", "duplicate key"), ("\"\\ud800\"", "lone surrogate"), ("\"a", "unterminated"),
        ("1 2", "unexpected data"), ("\"\u{1}\"", "control character"), ("nul", "expected null"), ("1e999", "out of range"),
    ])
    func rejects(_ text: String, _ fragment: String) {
        do {
            _ = try JSON.parse(text)
            Issue.record("accepted \(text)")
        } catch {
            #expect(error.message.contains(fragment), "\(error)")
        }
    }

    @Test func invalidUTF8_isRejected() {
        #expect(throws: JSON.ParseError.self) { try JSON.parse([0x22, 0xFF, 0xFE, 0x22]) }
    }

    @Test func depthIsCapped_andDeepInputFailsFast() {
        let deep = String(repeating: "[", count: 10_000) + String(repeating: "]", count: 10_000)
        do {
            _ = try JSON.parse(deep, maxDepth: 8)
            Issue.record("accepted 10,000 levels")
        } catch {
            #expect(error.message.contains("nesting deeper than 8"))
        }
    }

    @Test func serializationEscapesControlAndSeparators() {
        #expect(JSON.string("a\u{1}\u{2028}\"\\").text == "\"a\\u0001\\u2028\\\"\\\\\"")
        #expect(JSON.object([("b", .int(2)), ("a", .number(1.5))]).text == "{\"b\":2,\"a\":1.5}")
    }
}

@Suite struct DurationTests {
    @Test(arguments: [("90", 90_000), ("90s", 90_000), ("30m", 1_800_000), ("1h30m", 5_400_000), ("2d", 172_800_000),
                      ("1w", 604_800_000), ("1h1m1s", 3_661_000), ("500ms", 500)])
    func parses(_ text: String, _ ms: UInt64) throws {
        #expect(try Durations.parse(text).get() == ms)
    }

    @Test(arguments: ["", "0", "0s", "1x", "m", "1m1h", "1h1h", "366d", "-1s", "1.5h", "9999999999"])
    func rejects(_ text: String) {
        #expect(throws: DurationError.self) { try Durations.parse(text).get() }
    }

    @Test func formats() {
        #expect(Durations.format(ms: 5_400_000) == "1h30m")
        #expect(Durations.format(ms: 90_061_000) == "1d1h1m1s")
        #expect(Durations.format(ms: 999) == "999ms")
        #expect(Durations.format(ms: 60_000) == "1m")
    }
}

@Suite struct ControlProtocolTests {
    func parse(_ s: String) -> Result<ControlRequest, RequestFailure> { ControlProtocol.parse(Array(s.utf8)) }

    @Test func plainLines() throws {
        #expect(try parse("ping").get() == ControlRequest(command: .ping, plain: true))
        #expect(try parse(" status \r").get() == ControlRequest(command: .status, plain: true))
        #expect(try parse("reload").get().plain)
        guard case .failure(let f) = parse("shutdown") else { Issue.record("accepted"); return }
        #expect(f.plain && f.error.code == "invalid_request")
    }

    @Test func jsonRequests() throws {
        #expect(try parse(#"{"id":7,"cmd":"status"}"#).get() == ControlRequest(id: .int(7), command: .status))
        #expect(try parse(#"{"id":"x","cmd":"set show","set":"bl_v4"}"#).get().command == .setShow(set: "bl_v4"))
        let add = try parse(#"{"cmd":"set add","set":"bl_v4","elements":["192.0.2.1","10.0.0.0/8"],"timeout":"1h"}"#).get()
        #expect(add.command == .setAdd(set: "bl_v4", elements: [IPPrefix("192.0.2.1")!, IPPrefix("10.0.0.0/8")!], timeoutMs: 3_600_000))
        #expect(try parse(#"{"cmd":"set del","set":"bl_v4","elements":["192.0.2.1"]}"#).get().command
            == .setDel(set: "bl_v4", elements: [IPPrefix("192.0.2.1")!]))
        // What rnmctl sends parses back to the same request.
        #expect(try parse(add.line).get().command == add.command)
    }

    @Test(arguments: [
        (#"{"cmd":"nope"}"#, "unknown_command"), (#"{"cmd":1}"#, "invalid_request"), (#"{"id":1}"#, "invalid_request"),
        (#"{"cmd":"status","x":1}"#, "invalid_request"), (#"{"cmd":"set add","set":"a","elements":["1.2.3"]}"#, "invalid_argument"),
        (#"{"cmd":"set add","set":"A;b","elements":["1.2.3.4"]}"#, "invalid_argument"),
        (#"{"cmd":"set add","set":"a","elements":[]}"#, "invalid_argument"),
        (#"{"cmd":"set add","set":"a","elements":"1.2.3.4"}"#, "invalid_request"),
        (#"{"cmd":"set add","set":"a","elements":["1.2.3.4"],"timeout":"soon"}"#, "invalid_argument"),
        (#"{"cmd":"set show"}"#, "invalid_request"), (#"[1]"#, "invalid_request"), (#"{"id":[1],"cmd":"ping"}"#, "invalid_request"),
        ("{\"cmd\":\"ping\"", "parse_error"),
    ])
    func refusals(_ line: String, _ code: String) {
        guard case .failure(let f) = parse(line) else {
            Issue.record("accepted \(line)")
            return
        }
        #expect(f.error.code == code, "\(f.error)")
    }

    @Test func responsesAreOneLine() {
        let ok = ControlProtocol.success(id: .int(1), .object([("x", .string("a\nb"))]))
        #expect(!ok.contains("\n"))
        #expect(ok == #"{"id":1,"ok":true,"result":{"x":"a\nb"}}"#)
        #expect(ControlProtocol.failure(id: .null, ControlError("c", "m")) == #"{"id":null,"ok":false,"error":{"code":"c","message":"m"}}"#)
    }

    @Test func mutatingVerbs() {
        #expect(ControlCommand.reload.isMutating)
        #expect(ControlCommand.setAdd(set: "a", elements: [], timeoutMs: nil).isMutating)
        #expect(!ControlCommand.status.isMutating && !ControlCommand.events.isMutating && !ControlCommand.metrics.isMutating)
    }
}

@Suite struct WallTimeAndStoreTests {
    @Test func rfc3339() {
        #expect(WallTime.rfc3339(epochNanos: 0) == "1970-01-01T00:00:00.000Z")
        #expect(WallTime.rfc3339(epochNanos: 1_795_651_199_123_000_000) == "2026-11-25T23:59:59.123Z")
        #expect(WallTime.rfc3339(epochNanos: 951_782_400_000_000_000) == "2000-02-29T00:00:00.000Z")
    }

    @Test func manualEntries_roundTrip_keepRemainingLifetime_andSkipExpired() throws {
        let mono: UInt64 = 1_000_000_000_000
        let wall: UInt64 = 1_700_000_000_000_000_000
        let entries: [String: [IPPrefix: Deadline]] = [
            "bl_v4": [IPPrefix("192.0.2.1")!: mono + 60_000_000_000, IPPrefix("10.0.0.0/8")!: .never],
            "bl_v6": [IPPrefix("2001:db8::1")!: mono + 5_000_000_000],
        ]
        let text = ManualStore.encode(entries, monoNow: mono, wallNow: wall)
        // A restart 10 s later (monotonic time starts over).
        let back = try ManualStore.decode(Array(text.utf8), monoNow: 42, wallNow: wall + 10_000_000_000)
        #expect(back.expired == 1)
        #expect(back.entries == ["bl_v4": [IPPrefix("192.0.2.1")!: 42 + 50_000_000_000, IPPrefix("10.0.0.0/8")!: .never]])
    }

    @Test func corruptStore_isAnError() {
        for bad in ["", "{}", #"{"version":2,"entries":[]}"#, #"{"version":1,"entries":[{"set":"X","element":"1.2.3.4"}]}"#,
                    #"{"version":1,"entries":[{"set":"a","element":"nope"}]}"#] {
            #expect(throws: ControlError.self, "\(bad)") { try ManualStore.decode(Array(bad.utf8), monoNow: 0, wallNow: 0) }
        }
    }
}

@Suite struct EventTextTests {
    private func line(_ json: String) throws -> String { ControlText.event(try JSON.parse(json)) }

    @Test func tableEvents_renderOneReadableLine() throws {
        #expect(try line(#"{"time":"T","event":"load","reason":"reload","elements":12,"ms":"3.5"}"#)
            == "T table loaded (reload): 12 elements, 3.5 ms")
        #expect(try line(#"{"time":"T","event":"repaired","ms":"14.0"}"#) == "T table repaired in 14.0 ms")
        #expect(try line(#"{"time":"T","event":"drift","kind":"chain","detail":"chain input deleted","action":"repair","pid":42,"process":"nft"}"#)
            == #"T drift (chain) by pid 42 ("nft"): chain input deleted; repair"#)
        #expect(try line(#"{"time":"T","event":"drift","kind":"other","detail":"audit","action":"report"}"#)
            == "T drift (other): audit; report")
    }

    @Test func foreignNames_cannotBreakTheLine() throws {
        let text = try line(#"{"time":"T","event":"drift","kind":"set","detail":"set x\nT fake line","action":"repair","pid":1,"process":"a\nb"}"#)
        #expect(!text.contains("\n"))
        #expect(text == #"T drift (set) by pid 1 ("a\nb"): "set x\nT fake line"; repair"#)
    }
}

/// The descriptor rules, including hosts of later minor versions than this one (the compatibility promise).
@Suite struct PluginABITests {
    static let v10 = PluginABI.Host(major: 1, minor: 0, minimumDescriptorSize: 80, swiftBuild: "swift-6.3.1")

    @Test func aV10Descriptor_loadsIntoThisHostAndIntoLaterMinors() {
        let d = PluginABI.Descriptor(structSize: 80, magic: PluginABI.magic, major: 1, minor: 0)
        #expect(PluginABI.problem(d, host: Self.v10) == nil)
        // A 1.3 host has a larger descriptor of its own but still only requires what 1.0 had.
        let v13 = PluginABI.Host(major: 1, minor: 3, minimumDescriptorSize: 80, swiftBuild: "swift-6.3.1")
        #expect(PluginABI.problem(d, host: v13) == nil)
        // A 1.3 plugin with extra trailing fields loads into a 1.3 host, not into 1.0.
        let d13 = PluginABI.Descriptor(structSize: 104, magic: PluginABI.magic, major: 1, minor: 3)
        #expect(PluginABI.problem(d13, host: v13) == nil)
        #expect(PluginABI.problem(d13, host: Self.v10)?.contains("built for ABI 1.3; this rnmd supports up to ABI 1.0") == true)
    }

    @Test(arguments: [
        (PluginABI.Descriptor(structSize: 80, magic: 0xDEAD_BEEF, major: 1, minor: 0), "bad magic 0xdeadbeef (expected 0x504d4e52)"),
        (PluginABI.Descriptor(structSize: 80, magic: PluginABI.magic, major: 2, minor: 0), "built for ABI major 2; this rnmd speaks ABI 1"),
        (PluginABI.Descriptor(structSize: 16, magic: PluginABI.magic, major: 1, minor: 0), "descriptor struct_size 16 is smaller than the 80 bytes of ABI 1.0"),
        (PluginABI.Descriptor(structSize: 80, magic: PluginABI.magic, major: 1, minor: 0, hasName: false), "descriptor has no name"),
        (PluginABI.Descriptor(structSize: 80, magic: PluginABI.magic, major: 1, minor: 0,
                              hooks: ["create": true, "start": true, "stop": false, "destroy": true]), "descriptor has no stop function"),
        (PluginABI.Descriptor(structSize: 80, magic: PluginABI.magic, major: 1, minor: 0, buildInfo: "swift-5.10"),
         "built with swift-5.10; this rnmd was built with swift-6.3.1"),
    ])
    func refusals_sayWhy(_ d: PluginABI.Descriptor, _ fragment: String) {
        let problem = PluginABI.problem(d, host: Self.v10)
        #expect(problem?.contains(fragment) == true, "\(problem ?? "accepted")")
    }

    @Test func buildInfo_ofCPluginsIsNotAToolchain() {
        for info in [nil, "gcc 12", "c"] as [String?] {
            let d = PluginABI.Descriptor(structSize: 80, magic: PluginABI.magic, major: 1, minor: 0, buildInfo: info)
            #expect(PluginABI.problem(d, host: Self.v10) == nil)
        }
        let unknown = PluginABI.Host(major: 1, minor: 0, minimumDescriptorSize: 80, swiftBuild: nil)
        let swift = PluginABI.Descriptor(structSize: 80, magic: PluginABI.magic, major: 1, minor: 0, buildInfo: "swift-6.3.1")
        #expect(PluginABI.problem(swift, host: unknown) != nil)
    }
}
