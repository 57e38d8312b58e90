internal import CYAML
public import RNMCore

/// Limits that keep a hostile or broken file from costing more than a bounded amount of time and memory.
public struct YAMLLimits: Sendable {
    /// Input size in bytes.
    public var maxBytes: Int
    /// Nesting depth of sequences and mappings.
    public var maxDepth: Int
    /// Nodes in the tree after alias expansion (an alias bomb trips this, not the allocator).
    public var maxNodes: Int

    public init(maxBytes: Int = 1 << 20, maxDepth: Int = 64, maxNodes: Int = 100_000) {
        self.maxBytes = maxBytes
        self.maxDepth = maxDepth
        self.maxNodes = maxNodes
    }
}

/// A thin binding to libyaml's event parser that builds a `YAMLNode` tree with marks.
///
/// One document per file; anchors and aliases are expanded (counted against `maxNodes`); explicit tags are
/// rejected (the config has no use for them and they would only hide type errors).
public enum YAMLParser {
    /// Parses `bytes`. Returns nil for an empty stream. Errors name `file` and the 1-based line and column.
    public static func parse(
        _ bytes: [UInt8], file: String, limits: YAMLLimits = YAMLLimits()
    ) throws(ConfigError) -> YAMLNode? {
        func fail(_ mark: SourceMark, _ message: String) -> ConfigError {
            ConfigError([ConfigIssue(file: file, mark: mark, path: "", message: message)])
        }
        guard bytes.count <= limits.maxBytes else {
            throw fail(SourceMark(line: 0, column: 0),
                "the file has \(bytes.count) bytes; a config is at most \(limits.maxBytes) bytes")
        }

        var parser = yaml_parser_t()
        guard yaml_parser_initialize(&parser) == 1 else {
            throw fail(SourceMark(line: 0, column: 0), "cannot initialise the YAML parser (out of memory)")
        }
        defer { yaml_parser_delete(&parser) }

        var builder = TreeBuilder(limits: limits)
        return try bytes.withUnsafeBufferPointer { (buf) throws(ConfigError) -> YAMLNode? in
            yaml_parser_set_input_string(&parser, buf.baseAddress, buf.count)
            var event = yaml_event_t()
            while true {
                guard yaml_parser_parse(&parser, &event) == 1 else {
                    throw ConfigError([syntaxIssue(parser, file: file, input: buf)])
                }
                defer { yaml_event_delete(&event) }
                let mark = SourceMark(line: Int(event.start_mark.line) + 1, column: Int(event.start_mark.column) + 1)
                do {
                    if try builder.consume(event, mark: mark) { return builder.root }
                } catch let message as TreeBuilder.Failure {
                    throw fail(message.mark, message.text)
                } catch {
                    throw fail(mark, "\(error)")
                }
            }
        }
    }

    private static func syntaxIssue(_ parser: yaml_parser_t, file: String, input: UnsafeBufferPointer<UInt8>) -> ConfigIssue {
        let problem = parser.problem.map { String(cString: $0) } ?? "unknown problem"
        if parser.error == YAML_READER_ERROR {
            // Encoding errors carry a byte offset, not a mark: count lines up to it.
            let offset = min(Int(parser.problem_offset), input.count)
            var line = 1
            var column = 1
            for b in input[0..<offset] {
                if b == UInt8(ascii: "\n") {
                    line += 1
                    column = 1
                } else if b & 0xC0 != 0x80 {
                    column += 1
                }
            }
            var message = "invalid text: \(problem)"
            if parser.problem_value != -1 { message += " (byte 0x\(String(UInt8(truncatingIfNeeded: parser.problem_value), radix: 16)))" }
            message += "; a config file must be UTF-8"
            return ConfigIssue(file: file, mark: SourceMark(line: line, column: column), path: "", message: message)
        }
        var message = "YAML syntax error: \(problem)"
        if let ctx = parser.context {
            message += " (\(String(cString: ctx)) at \(parser.context_mark.line + 1):\(parser.context_mark.column + 1))"
        }
        let mark = SourceMark(line: Int(parser.problem_mark.line) + 1, column: Int(parser.problem_mark.column) + 1)
        return ConfigIssue(file: file, mark: mark, path: "", message: message)
    }
}

/// Turns the event stream into a tree. Kept separate from the C calls so the parser loop stays small.
private struct TreeBuilder {
    struct Failure: Error {
        var mark: SourceMark
        var text: String
    }

    /// An open collection. Mutated in place at the top of the stack (no copy-on-write churn).
    private struct Frame {
        var isMapping: Bool
        var items: [YAMLNode] = []
        var pairs: [YAMLPair] = []
        var key: YAMLNode? = nil
        var mark: SourceMark
        var anchor: String?
        var nodes = 1
    }

    let limits: YAMLLimits
    private var stack: [Frame] = []
    private var anchors: [String: (node: YAMLNode, nodes: Int)] = [:]
    private var totalNodes = 0
    private var documents = 0
    private(set) var root: YAMLNode? = nil

    init(limits: YAMLLimits) { self.limits = limits }

    /// Returns true at the end of the stream.
    mutating func consume(_ event: yaml_event_t, mark: SourceMark) throws -> Bool {
        switch event.type {
        case YAML_STREAM_START_EVENT, YAML_DOCUMENT_END_EVENT:
            return false
        case YAML_STREAM_END_EVENT:
            return true
        case YAML_DOCUMENT_START_EVENT:
            documents += 1
            if documents > 1 { throw Failure(mark: mark, text: "a config file holds one YAML document; found a second one") }
            return false
        case YAML_ALIAS_EVENT:
            let name = String(cString: event.data.alias.anchor)
            guard let (node, count) = anchors[name] else {
                throw Failure(mark: mark, text: "unknown alias *\(name)")
            }
            try add(node, count: count, anchor: nil, mark: mark)
        case YAML_SCALAR_EVENT:
            let s = event.data.scalar
            if s.tag != nil { throw Failure(mark: mark, text: "explicit YAML tags are not supported") }
            let value = String(decoding: UnsafeBufferPointer(start: s.value, count: s.length), as: UTF8.self)
            let plain = s.style == YAML_PLAIN_SCALAR_STYLE
            try add(YAMLNode(.scalar(value, plain: plain), mark: mark), count: 1, anchor: anchorName(s.anchor), mark: mark)
        case YAML_SEQUENCE_START_EVENT:
            let s = event.data.sequence_start
            if s.tag != nil { throw Failure(mark: mark, text: "explicit YAML tags are not supported") }
            try push(Frame(isMapping: false, mark: mark, anchor: anchorName(s.anchor)), mark: mark)
        case YAML_MAPPING_START_EVENT:
            let m = event.data.mapping_start
            if m.tag != nil { throw Failure(mark: mark, text: "explicit YAML tags are not supported") }
            try push(Frame(isMapping: true, mark: mark, anchor: anchorName(m.anchor)), mark: mark)
        case YAML_SEQUENCE_END_EVENT, YAML_MAPPING_END_EVENT:
            guard let f = stack.popLast() else { throw Failure(mark: mark, text: "unbalanced collection end") }
            let node = YAMLNode(f.isMapping ? .mapping(f.pairs) : .sequence(f.items), mark: f.mark)
            try attach(node, count: f.nodes, anchor: f.anchor)
        default:
            return false
        }
        return false
    }

    private func anchorName(_ p: UnsafeMutablePointer<yaml_char_t>?) -> String? {
        p.map { String(cString: $0) }
    }

    private mutating func push(_ frame: Frame, mark: SourceMark) throws {
        guard stack.count < limits.maxDepth else {
            throw Failure(mark: mark, text: "nesting is deeper than \(limits.maxDepth) levels")
        }
        try countNodes(1, mark: mark)
        stack.append(frame)
    }

    private mutating func countNodes(_ n: Int, mark: SourceMark) throws {
        totalNodes += n
        if totalNodes > limits.maxNodes {
            throw Failure(mark: mark, text: "the document expands to more than \(limits.maxNodes) nodes (alias bomb?)")
        }
    }

    /// A leaf (scalar or alias copy) was read.
    private mutating func add(_ node: YAMLNode, count: Int, anchor: String?, mark: SourceMark) throws {
        try countNodes(count, mark: mark)
        try attach(node, count: count, anchor: anchor)
    }

    private mutating func attach(_ node: YAMLNode, count: Int, anchor: String?) throws {
        if let anchor { anchors[anchor] = (node, count) }
        guard !stack.isEmpty else {
            root = node
            return
        }
        let top = stack.count - 1
        stack[top].nodes += count
        if !stack[top].isMapping {
            stack[top].items.append(node)
        } else if let key = stack[top].key {
            stack[top].pairs.append(YAMLPair(key: key, value: node))
            stack[top].key = nil
        } else {
            stack[top].key = node
        }
    }
}
