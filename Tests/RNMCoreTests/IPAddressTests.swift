import RNMCore
import Testing

@Suite struct IPAddressTests {
    @Test(arguments: [
        ("0.0.0.0", "0.0.0.0"), ("192.168.1.1", "192.168.1.1"), ("255.255.255.255", "255.255.255.255"),
        ("10.0.0.01", nil), ("1.2.3", nil), ("1.2.3.4.5", nil), ("256.1.1.1", nil), ("1..2.3", nil),
        ("1.2.3.4 ", nil), ("", nil), ("a.b.c.d", nil), ("1.2.3.", nil), (".1.2.3", nil), ("1234.1.1.1", nil),
    ])
    func ipv4_parsesStrictDottedQuadsOnly(input: String, expected: String?) {
        #expect(IPv4Address(input)?.description == expected)
    }

    @Test(arguments: [
        ("::", "::"), ("::1", "::1"), ("2001:db8::1", "2001:db8::1"), ("2001:DB8:0:0:0:0:0:1", "2001:db8::1"),
        ("fe80::1:2", "fe80::1:2"), ("1:2:3:4:5:6:7:8", "1:2:3:4:5:6:7:8"), ("1::", "1::"),
        ("1:0:0:2:0:0:0:3", "1:0:0:2::3"), ("1:0:0:2:0:0:3:4", "1::2:0:0:3:4"), ("2001:db8:0:1:1:1:1:1", "2001:db8:0:1:1:1:1:1"),
        ("::ffff:1.2.3.4", "::ffff:102:304"), ("0:0:0:0:0:0:0:0", "::"),
        (":::", nil), ("1:2:3:4:5:6:7:8:9", nil), ("1::2::3", nil), ("12345::", nil), ("1:2", nil), ("g::1", nil),
        ("1:", nil), (":1", nil), ("1:2:3:4:5:6:7::8", nil), ("::1.2.3", nil), ("fe80::1%eth0", nil),
    ])
    func ipv6_parsesRFC4291AndPrintsRFC5952(input: String, expected: String?) {
        #expect(IPv6Address(input)?.description == expected)
    }

    @Test func bytes_roundTripThroughKernelOrder() {
        let v4 = IPv4Address("192.0.2.7")!
        #expect(v4.bytes == [192, 0, 2, 7])
        #expect(IPv4Address(bytes: v4.bytes) == v4)
        let v6 = IPv6Address("2001:db8::abcd:1")!
        #expect(v6.bytes == [0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0xab, 0xcd, 0, 1])
        #expect(IPv6Address(bytes: v6.bytes) == v6)
    }

    @Test func linkLocal_isRecognisedForBothFamilies() {
        #expect(IPAddress("169.254.3.4")!.isLinkLocal)
        #expect(!IPAddress("169.253.3.4")!.isLinkLocal)
        #expect(IPAddress("fe80::1")!.isLinkLocal)
        #expect(IPAddress("febf::1")!.isLinkLocal)
        #expect(!IPAddress("fec0::1")!.isLinkLocal)
    }

    @Test(arguments: [
        ("192.168.1.1/24", "192.168.1.1/24"), ("10.0.0.1", "10.0.0.1/32"), ("2001:db8::1/64", "2001:db8::1/64"),
        ("2001:db8::1", "2001:db8::1/128"), ("10.0.0.1/33", nil), ("10.0.0.1/", nil), ("10.0.0.1/024", nil),
        ("2001:db8::/129", nil), ("/24", nil), ("10.0.0.1/-1", nil), ("10.0.0.1/2a", nil),
    ])
    func prefix_parses(input: String, expected: String?) {
        #expect(IPPrefix(input)?.description == expected)
    }
}

@Suite struct NamesTests {
    @Test(arguments: ["eth0", "wlp3s0", "br-lan", "a", "123456789012345", "en\u{e9}0"])
    func interfaceName_accepts(_ name: String) {
        #expect(Names.interfaceNameProblem(name) == nil)
    }

    @Test(arguments: [
        ("", "must not be empty"), ("1234567890123456", "at most 15 bytes"), ("eth/0", "'/'"), ("eth:0", "':'"),
        ("eth 0", "whitespace"), ("eth\t0", "whitespace"), ("eth\u{1}0", "control"), (".", "not a valid"),
        ("..", "not a valid"), ("\u{e9}\u{e9}\u{e9}\u{e9}\u{e9}\u{e9}\u{e9}\u{e9}", "at most 15 bytes"),
    ])
    func interfaceName_rejects(_ name: String, _ fragment: String) {
        let problem = Names.interfaceNameProblem(name)
        #expect(problem?.contains(fragment) == true, "\(String(describing: problem))")
    }

    @Test func zoneName_rules() {
        #expect(Names.zoneNameProblem("lan") == nil)
        #expect(Names.zoneNameProblem("dmz_2") == nil)
        #expect(Names.zoneNameProblem(String(repeating: "a", count: 24)) == nil)
        #expect(Names.zoneNameProblem(String(repeating: "a", count: 25)) != nil)
        for bad in ["", "Lan", "2lan", "_lan", "la-n", "la n", "lan;", "@lan", "lan*", "l\u{e4}n"] {
            #expect(Names.zoneNameProblem(bad) != nil, "\(bad)")
        }
    }
}
