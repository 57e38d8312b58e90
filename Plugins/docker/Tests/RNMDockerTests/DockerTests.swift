import RNMDocker
import Testing

@Suite struct HTTPReaderTests {
    static func bytes(_ s: String) -> [UInt8] { Array(s.utf8) }

    /// Feeds `text` in pieces of `step` bytes; returns the status and the body, or the failure.
    static func read(_ text: String, step: Int, limits: HTTPResponseReader.Limits = .init()) -> (Int, String, Bool) {
        var r = HTTPResponseReader(limits: limits)
        var status = 0
        var body: [UInt8] = []
        var ended = false
        let all = bytes(text)
        var i = 0
        do {
            while i < all.count {
                for e in try r.feed(all[i..<min(i + step, all.count)]) {
                    switch e {
                    case .head(let h): status = h.status
                    case .body(let b): body += b
                    case .end: ended = true
                    }
                }
                i += step
            }
            if !ended {
                for e in try r.finish() { if e == .end { ended = true } }
            }
        } catch {
            return (-1, "\(error)", false)
        }
        return (status, String(decoding: body, as: UTF8.self), ended)
    }

    @Test(arguments: [1, 2, 3, 7, 1000])
    func chunkedBody_isDecodedWhateverTheReadSizes(step: Int) {
        let text = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
            + "5\r\nhello\r\n1;ext=1\r\n \r\nA\r\n0123456789\r\n0\r\nX-Trailer: y\r\n\r\n"
        let (status, body, ended) = Self.read(text, step: step)
        #expect(status == 200)
        #expect(body == "hello 0123456789")
        #expect(ended)
    }

    @Test func lengthAndUntilCloseBodies() {
        #expect(Self.read("HTTP/1.1 404 Not Found\r\ncontent-length: 3\r\n\r\nabc", step: 2) == (404, "abc", true))
        #expect(Self.read("HTTP/1.0 200 OK\r\n\r\nstream until close", step: 4) == (200, "stream until close", true))
        #expect(Self.read("HTTP/1.1 204 No Content\r\n\r\n", step: 1) == (204, "", true))
    }

    @Test(arguments: [
        ("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", "bad chunk size"),
        ("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabcXY", "not followed by CRLF"),
        ("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nFFFFFFFF\r\n", "larger than"),
        ("HTTP/1.1 200 OK\r\nContent-Length: 99999999999\r\n\r\n", "larger than"),
        ("HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n", "bad Content-Length"),
        ("HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc", "closed in the middle"),
        ("SMTP ready\r\n\r\n", "bad status line"),
        ("HTTP/1.1 200 OK\r\nno colon here\r\n\r\n", "bad header line"),
        ("", "closed before a response"),
    ])
    func malformedResponses_areRefused(_ text: String, _ fragment: String) {
        let (status, message, _) = Self.read(text, step: 5, limits: .init(header: 1024, body: 1 << 20, chunk: 1 << 20))
        #expect(status == -1)
        #expect(message.contains(fragment), "\(message)")
    }

    @Test func anEndlessHead_isCappedWithoutBuffering() {
        var r = HTTPResponseReader(limits: .init(header: 1024))
        #expect(throws: HTTPResponseReader.Failure.self) {
            for _ in 0..<100 { _ = try r.feed(Array(repeating: UInt8(ascii: "a"), count: 100)) }
        }
    }

    @Test func lines_splitAcrossChunksAndCapped() throws {
        var s = LineSplitter(maxLine: 16)
        #expect(try s.feed(Self.bytes("{\"a\":1}\n{\"b\"")) == [Self.bytes("{\"a\":1}")])
        #expect(try s.feed(Self.bytes(":2}\n\n")) == [Self.bytes("{\"b\":2}")])
        #expect(throws: HTTPResponseReader.Failure.self) { try s.feed(Array(repeating: 0x61, count: 17)) }
    }
}

@Suite struct DockerConfigTests {
    static func parse(_ s: String) -> Result<DockerConfig, DockerConfig.Problem> {
        Result { () throws(DockerConfig.Problem) in try DockerConfig.parse(Array(s.utf8)) }
    }

    @Test func quoted_escapesLikeTheHost() {
        #expect(DockerConfig.quoted("a\nb\u{1b}[31m\"\\") == #""a\nb\x1b[31m\"\\""#)
        #expect(DockerConfig.quoted("x\u{7}", max: 64) == #""x\x07""#)
        #expect(DockerConfig.quoted(String(repeating: "y", count: 100), max: 3) == "\"yyy…\"")
    }

    @Test func validConfig_decodes() throws {
        let c = try Self.parse(#"{"socket":"/run/d.sock","rules":[{"label":"rnm.set","sets_from_label_value":true},{"label":"app","value":"web","set_v4":"web_v4"},{"network":"bridge","set_v4":"c_v4","set_v6":"c_v6"}]}"#).get()
        #expect(c.socket == "/run/d.sock")
        #expect(c.rules == [
            .init(label: "rnm.set", setsFromLabelValue: true), .init(label: "app", value: "web", setV4: "web_v4"),
            .init(network: "bridge", setV4: "c_v4", setV6: "c_v6"),
        ])
        #expect(c.fixedSets == ["web_v4", "c_v4", "c_v6"])
        #expect(try Self.parse(#"{"rules":[{"network":"bridge","set_v4":"a"}]}"#).get().socket == "/var/run/docker.sock")
    }

    @Test(arguments: [
        (#"{}"#, "config.rules: at least one rule"),
        (#"{"rules":[{"set_v4":"a"}]}"#, "config.rules[0]: needs `label` or `network`"),
        (#"{"rules":[{"network":"n"}]}"#, "needs `set_v4`, `set_v6` or `sets_from_label_value: true`"),
        (#"{"rules":[{"network":"n","sets_from_label_value":true}]}"#, "sets_from_label_value: needs `label`"),
        (#"{"rules":[{"label":"l","value":"v","sets_from_label_value":true}]}"#, "cannot go with `value`"),
        (#"{"rules":[{"network":"n","set_v4":"Bad; name"}]}"#, #"set_v4: "Bad; name" is not a set name"#),
        (#"{"rules":[{"network":"n","set_v4":"a","colour":1}]}"#, "config.rules[0].colour: unknown key"),
        (#"{"sockett":"/x","rules":[]}"#, "config.sockett: unknown key"),
        (#"{"socket":"relative","rules":[{"network":"n","set_v4":"a"}]}"#, "config.socket: expected an absolute path"),
        (#"{"rules":[{"network":5,"set_v4":"a"}]}"#, "expected"),
    ])
    func problems_nameTheField(_ json: String, _ fragment: String) {
        guard case .failure(let p) = Self.parse(json) else {
            Issue.record("accepted \(json)")
            return
        }
        #expect(p.description.contains(fragment), "\(p)")
    }
}

@Suite struct TrackerTests {
    static let config = DockerConfig(rules: [
        .init(label: "rnm.set", setsFromLabelValue: true),
        .init(label: "app", value: "web", setV4: "web_v4", setV6: "web_v6"),
        .init(network: "bridge", setV4: "bridge_v4"),
    ])

    static func container(_ id: String, labels: [String: String] = [:], _ nets: [String: (String, String)]) -> Docker.Inspect {
        Docker.Inspect(id: id, labels: labels, networks: nets.mapValues { Docker.Inspect.Endpoint(ipv4: $0.0, ipv6: $0.1) })
    }

    @Test func rules_selectByLabelAndByNetwork() {
        let t = ContainerTracker(config: Self.config)
        let c = Self.container("a1", labels: ["rnm.set": "db", "app": "web"],
                               ["bridge": ("172.17.0.2", ""), "v6net": ("10.1.0.2", "fd00::2")])
        let m = t.memberships(of: c).members.map { "\($0.set) \($0.address)" }
        #expect(m.sorted() == [
            "bridge_v4 172.17.0.2", "db_v4 10.1.0.2", "db_v4 172.17.0.2", "db_v6 fd00::2",
            "web_v4 10.1.0.2", "web_v4 172.17.0.2", "web_v6 fd00::2",
        ])
        var stopped = c
        stopped.running = false
        #expect(t.memberships(of: stopped).members.isEmpty)
    }

    @Test func reusedAddress_survivesTheOldContainersEvents() {
        var t = ContainerTracker(config: Self.config)
        let ip = Membership(set: "bridge_v4", address: "172.17.0.9")
        #expect(t.update("old", Self.container("old", ["bridge": ("172.17.0.9", "")])).added == [ip])
        // The old one dies and a new one takes its address: whichever order the events come in.
        #expect(t.update("new", Self.container("new", ["bridge": ("172.17.0.9", "")])).added == [])
        #expect(t.update("old", nil).removed == [])
        #expect(t.members == [ip])
        #expect(t.update("new", nil).removed == [ip])
        #expect(t.members.isEmpty)
    }

    @Test func networkDisconnect_removesOnlyThatNetworksAddresses() {
        var t = ContainerTracker(config: Self.config)
        let two = Self.container("c", labels: ["app": "web"], ["bridge": ("172.17.0.5", ""), "v6net": ("10.1.0.5", "fd00::5")])
        _ = t.update("c", two)
        let one = Self.container("c", labels: ["app": "web"], ["bridge": ("172.17.0.5", "")])
        let change = t.update("c", one)
        #expect(change.added == [])
        #expect(change.removed.map(\.address).sorted() == ["10.1.0.5", "fd00::5"])
    }

    @Test(arguments: ["; flush ruleset", "@set", "*", "Web", "a-b", String(repeating: "x", count: 65536), "", "abcdefghijklmnopqrstuvwxyz0123"])
    func hostileLabelValues_nameNoSet(_ value: String) {
        var t = ContainerTracker(config: Self.config)
        let change = t.update("h", Self.container("h", labels: ["rnm.set": value], ["n": ("10.0.0.1", "")]))
        #expect(change.added.isEmpty)
        #expect(change.refused == [value])
        #expect(t.refusedCount == 1)
        // Counted once per container, not per event.
        #expect(t.update("h", Self.container("h", labels: ["rnm.set": value], ["n": ("10.0.0.1", "")])).refused.isEmpty)
        #expect(t.refusedCount == 1)
    }

    @Test func reset_replacesEverythingAndReportsEmptiedSets() {
        var t = ContainerTracker(config: Self.config)
        _ = t.update("gone", Self.container("gone", labels: ["rnm.set": "db"], ["bridge": ("172.17.0.7", "")]))
        _ = t.reset([Self.container("x", ["bridge": ("172.17.0.8", "")])])
        #expect(t.contribution(alsoSets: ["db_v4"]) == ["db_v4": [], "bridge_v4": ["172.17.0.8"]])
        #expect(t.containerCount == 1)
    }

    @Test func events_decodeAndNameTheirContainer() throws {
        let start = try Docker.decode(Docker.Event.self, Array(#"{"status":"start","id":"abc","Type":"container","Action":"start","Actor":{"ID":"abc","Attributes":{"name":"x"}},"time":1}"#.utf8))
        #expect(start.container == "abc" && start.effect == .refresh)
        let connect = try Docker.decode(Docker.Event.self, Array(#"{"Type":"network","Action":"connect","Actor":{"ID":"n1","Attributes":{"container":"def","name":"v6net"}}}"#.utf8))
        #expect(connect.container == "def" && connect.effect == .network)
        let die = try Docker.decode(Docker.Event.self, Array(#"{"Type":"container","Action":"die","Actor":{"ID":"abc","Attributes":{"exitCode":"137"}}}"#.utf8))
        #expect(die.effect == .gone)
        let health = try Docker.decode(Docker.Event.self, Array(#"{"Type":"container","Action":"health_status: healthy","Actor":{"ID":"abc"}}"#.utf8))
        #expect(health.effect == .none)
        #expect(Docker.eventsPath(since: "1.5") == "/events?since=1.5&filters=%7B%22type%22%3A%5B%22container%22%2C%22network%22%5D%7D")
    }

    @Test func inspect_decodesWhatDockerSends() throws {
        let json = #"{"Id":"abc","Name":"/web","State":{"Status":"running","Running":true},"Config":{"Labels":{"app":"web"}},"NetworkSettings":{"Networks":{"bridge":{"IPAddress":"172.17.0.2","GlobalIPv6Address":""},"v6":{"IPAddress":"10.1.0.2","GlobalIPv6Address":"fd00::2"}}}}"#
        let c = try Docker.decode(Docker.Inspect.self, Array(json.utf8))
        #expect(c.running && c.labels == ["app": "web"] && c.name == "/web")
        #expect(c.networks["v6"] == .init(ipv4: "10.1.0.2", ipv6: "fd00::2"))
        let bare = try Docker.decode(Docker.Inspect.self, Array(#"{"Id":"x","State":{"Running":false},"Config":null,"NetworkSettings":null}"#.utf8))
        #expect(!bare.running && bare.labels.isEmpty && bare.networks.isEmpty)
    }
}
