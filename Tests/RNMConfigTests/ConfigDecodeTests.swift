import Glibc
import RNMCore
import RNMYAML
import Testing

@Suite struct ConfigDecodeTests {
    @Test func validFull_decodesEverySpelling() throws {
        let config = try ConfigLoader.load(path: Fixture.path("valid-full.yaml"))
        #expect(config.table == "edge")
        #expect(config.interfaces == [
            InterfaceConfig(name: "eth0", zone: "wan", dhcp: true),
            InterfaceConfig(name: "eth1", zone: "lan", addresses: [IPPrefix("192.168.1.1/24")!]),
            InterfaceConfig(name: "wg0", zone: "vpn", addresses: [IPPrefix("10.8.0.1/24")!, IPPrefix("fd00:8::1/64")!]),
        ])
        #expect(config.addressPolicy == AddressPolicy(linkLocal: true, deprecated: false, temporary: false))
        #expect(config.zones == ["wan", "lan", "vpn"])
        #expect(config.sets == [
            DeclaredSet(name: "blocklist_v4", family: .v4, interval: true, timeoutFlag: true, defaultTimeoutMs: 3_600_000),
            DeclaredSet(name: "trusted_v6", family: .v6, interval: true, elements: [IPPrefix("2001:db8:100::/48")!]),
        ])
        #expect(config.control == ControlConfig(socket: "/run/rnm/ctl.sock", group: "4242"))
        #expect(config.stateDir == "/var/lib/rnm-test")
        #expect(config.rules.map(\.given) == ["rules.d/host.nft", "./rules.d/../rules.d/extra.nft"])
        #expect(config.rules.map(\.path) == [Fixture.path("rules.d/host.nft"), Fixture.path("rules.d/extra.nft")])
        #expect(config.rules[0].text.hasPrefix("chain input {\n"))
        #expect(config.rules[1].text == "# empty on purpose\n")
        #expect(config.defines == [Define(name: "ssh_port", value: "22"), Define(name: "trusted", value: "{ 10.0.0.0/8, 192.168.0.0/16 }")])
        #expect(config.auditIntervalMs == 300_000)
        #expect(config.driftRepair == false)
    }

    @Test func relativeConfigPath_resolvesTemplatesAgainstTheConfigsDirectory() throws {
        // The working directory is the package root under `swift test`; the config is named relative to it.
        var cwd = [CChar](repeating: 0, count: 4096)
        _ = getcwd(&cwd, cwd.count)
        let here = String(decoding: cwd.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
        guard Fixture.directory.hasPrefix(here + "/") else { return }
        let relative = String(Fixture.directory.dropFirst(here.count + 1)) + "/valid-full.yaml"
        let config = try ConfigLoader.load(path: relative)
        #expect(config.rules.first?.path == Fixture.path("rules.d/host.nft"))
    }

    @Test func shippedDefaultConfig_isValid() throws {
        var parts = #filePath.split(separator: "/", omittingEmptySubsequences: false)
        parts.removeLast(3)
        let path = parts.joined(separator: "/") + "/pkg-files/config/default.yaml"
        let config = try ConfigLoader.load(path: path)
        #expect(config.table == "rnm")
        #expect(config.zones == ["wan", "lan"])
        #expect(config.addressPolicy == AddressPolicy())
    }

    @Test func defaults_whenOptionalFieldsAreAbsent() throws {
        let root = try YAMLParser.parse(Array("interfaces:\n  - {name: eth0, zone: wan}\n".utf8), file: "t.yaml")
        let config = try ConfigDecoder.decode(root, file: "t.yaml")
        #expect(config == Config(table: "rnm", interfaces: [InterfaceConfig(name: "eth0", zone: "wan")]))
    }

    @Test func anchorsAndAliases_expand() throws {
        let text = """
            interfaces:
              - &up {name: eth0, zone: wan}
              - name: eth1
                zone: &z lan
              - name: eth2
                zone: *z
            """
        let config = try ConfigDecoder.decode(try YAMLParser.parse(Array(text.utf8), file: "a.yaml"), file: "a.yaml")
        #expect(config.interfaces.map(\.zone) == ["wan", "lan", "lan"])
    }

    @Test func marks_pointAtTheNode() throws {
        let root = try #require(try YAMLParser.parse(Array("a:\n  - x\n  -   y\n".utf8), file: "m.yaml"))
        guard case .mapping(let pairs) = root.kind, case .sequence(let items) = pairs[0].value.kind else {
            Issue.record("unexpected shape")
            return
        }
        #expect(pairs[0].key.mark == SourceMark(line: 1, column: 1))
        #expect(items.map(\.mark) == [SourceMark(line: 2, column: 5), SourceMark(line: 3, column: 7)])
    }

    @Test func quotedScalars_areStringsNotBooleans() throws {
        let text = "interfaces:\n  - name: eth0\n    zone: wan\n    dhcp: \"true\"\n"
        #expect(throws: ConfigError.self) {
            try ConfigDecoder.decode(try YAMLParser.parse(Array(text.utf8), file: "q.yaml"), file: "q.yaml")
        }
    }
}

@Suite struct YAMLLimitTests {
    func issue(_ bytes: [UInt8], limits: YAMLLimits = YAMLLimits()) -> String {
        do {
            _ = try YAMLParser.parse(bytes, file: "x.yaml", limits: limits)
            return "(parsed)"
        } catch {
            return error.description
        }
    }

    @Test func aliasBomb_isRejectedAtTheNodeCap() {
        // Nine levels of ten-fold aliases: 10^9 nodes if expanded.
        var text = "a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n"
        for i in 1...9 {
            text += "a\(i): &a\(i) [" + Array(repeating: "*a\(i - 1)", count: 10).joined(separator: ", ") + "]\n"
        }
        let clock = ContinuousClock()
        var message = ""
        let took = clock.measure { message = issue(Array(text.utf8)) }
        #expect(message.contains("more than 100000 nodes (alias bomb?)"), "\(message)")
        #expect(took < .seconds(2), "took \(took)")
    }

    @Test func deepNesting_isRejected() {
        let text = String(repeating: "[", count: 10_000) + String(repeating: "]", count: 10_000)
        #expect(issue(Array(text.utf8)).contains("nesting is deeper than 64 levels"))
        let block = (0..<100).map { String(repeating: "  ", count: $0) + "k\($0):" }.joined(separator: "\n") + " v\n"
        #expect(issue(Array(block.utf8)).contains("nesting is deeper than 64 levels"))
    }

    @Test func oversizedInput_isRejectedBeforeParsing() {
        let big = [UInt8](repeating: UInt8(ascii: "#"), count: 10 << 20)
        #expect(issue(big).contains("the file has 10485760 bytes; a config is at most 1048576 bytes"))
    }

    @Test func oversizedFile_isRejectedByTheLoader() throws {
        let path = "/tmp/rnm-config-test-\(getpidValue()).yaml"
        try writeFile(path, [UInt8](repeating: UInt8(ascii: "#"), count: (1 << 20) + 1))
        defer { removeFile(path) }
        #expect(throws: ConfigError.self) { try ConfigLoader.load(path: path) }
        do {
            _ = try ConfigLoader.load(path: path)
        } catch {
            #expect(error.description == "\(path): the file has 1048577 bytes; a config is at most 1048576 bytes")
        }
    }

    @Test func missingFile_namesTheFile() {
        do {
            _ = try ConfigLoader.load(path: "/nonexistent/rnm.yaml")
            Issue.record("loaded a missing file")
        } catch {
            #expect(error.description == "/nonexistent/rnm.yaml: cannot open: No such file or directory")
        }
    }

    @Test func directory_isNotAConfig() {
        do {
            _ = try ConfigLoader.load(path: "/tmp")
            Issue.record("loaded a directory")
        } catch {
            #expect(error.description == "/tmp: not a regular file")
        }
    }

    @Test func garbage_isASyntaxErrorNotACrash() {
        var rng: UInt64 = 12345
        for _ in 0..<200 {
            var bytes: [UInt8] = []
            for _ in 0..<256 {
                rng = rng &* 6364136223846793005 &+ 1442695040888963407
                bytes.append(UInt8(truncatingIfNeeded: rng >> 33))
            }
            _ = issue(bytes)
        }
    }
}

@Suite struct PluginConfigTests {
    @Test func plugins_decodeWithPathsGrantsAndConfigAsJSON() throws {
        let config = try ConfigLoader.load(path: Fixture.path("plugins-valid.yaml"))
        #expect(config.pluginDir == "/opt/rnm/plugins")
        #expect(config.plugins.map(\.name) == ["docker", "local", "abs"])
        #expect(config.plugins[0].path == "/opt/rnm/plugins/docker.so")
        #expect(config.plugins[0].sets == ["allow_v4", "ban_v6"])
        #expect(config.plugins[0].enabled)
        // YAML 1.2 core schema for plain scalars; quoted ones stay strings; key order is kept.
        #expect(config.plugins[0].configJSON == #"{"socket":"/run/docker.sock","labels":["a","b"],"retries":3,"ratio":0.5,"hex":31,"debug":false,"quoted":"true","none":null,"nested":{"x":[1,{"y":null}]}}"#)
        #expect(config.plugins[1].path == Fixture.path("lib/local.so"))
        #expect(!config.plugins[1].enabled)
        #expect(config.plugins[1].configJSON == "{}")
        #expect(config.plugins[2].path == "/usr/lib/rnm/plugins/abs.so")
    }

    @Test func pluginDir_defaultsToTheShippedDirectory() throws {
        let config = try ConfigLoader.load(path: Fixture.path("valid-full.yaml"))
        #expect(config.pluginDir == "/usr/lib/rnm/plugins")
        #expect(config.plugins.isEmpty)
    }
}
