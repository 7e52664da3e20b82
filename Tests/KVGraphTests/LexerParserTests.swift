import Testing
@testable import KVGraph

@Suite("Lexer and parser")
struct LexerParserTests {
    func kinds(_ s: String) -> [TokenKind] {
        var l = Lexer(s)
        return l.tokenize().map(\.kind)
    }

    @Test("tokens, keywords, ranges, and the Unicode operators × ÷ −")
    func tokens() {
        #expect(kinds("let d = 4 × (2 − 1) ÷ 2") == [.keyword(.let), .identifier("d"), .symbol(.equals), .integer(4), .symbol(.star),
                                                 .symbol(.lparen), .integer(2), .symbol(.minus), .integer(1), .symbol(.rparen),
                                                 .symbol(.slash), .integer(2), .end])
        #expect(kinds("for l in 0..<n {") == [.keyword(.for), .identifier("l"), .keyword(.in), .integer(0), .symbol(.halfOpenRange),
                                             .identifier("n"), .symbol(.lbrace), .end])
        #expect(kinds("eps=1e-5 t=1_000 s=\"a\\\"b\"") == [.identifier("eps"), .symbol(.equals), .float(1e-5), .identifier("t"),
                                                          .symbol(.equals), .integer(1000), .identifier("s"), .symbol(.equals), .string("a\"b"), .end])
    }

    @Test("newlines end statements except inside parentheses and brackets; comments are skipped")
    func newlines() {
        #expect(kinds("a(\n1,\n2)\nb # c\n\n") == [.identifier("a"), .symbol(.lparen), .integer(1), .symbol(.comma), .integer(2),
                                                  .symbol(.rparen), .newline, .identifier("b"), .newline, .end])
    }

    @Test("lexical errors are positioned and do not stop the lexer")
    func lexicalErrors() {
        var l = Lexer("let a = 99999999999999999999\nlet b = $\nlet c = \"open")
        _ = l.tokenize()
        #expect(l.diagnostics.errors.map { "\($0.location): \($0.message)" } == [
            "1:9: integer '99999999999999999999' does not fit in 64 bits",
            "2:9: unexpected character '$'",
            "3:9: unterminated string",
        ])
    }

    @Test("the parser recovers per statement and reports every syntax error")
    func recovery() {
        #expect(errors("let = 3\ninput x f32[2]\nweight w: f32[2, 2]\ny = matmul(x w)\nlet ok = 1\n}") == [
            "1:5: expected a constant name, found '='",
            "2:9: expected ':' and a type after the input name, as in 'x: f16[4, 8]', found identifier 'f32'",
            "4:14: expected ')' to close the call to 'matmul', found identifier 'w'",
            "6:1: '}' without a matching '{'",
        ])
    }

    @Test("hostile nesting is an error, not a stack overflow")
    func deepNesting() {
        let deep = "let a = " + String(repeating: "(", count: 5000) + "1" + String(repeating: ")", count: 5000)
        #expect(errors(deep).first?.contains("nesting deeper than") == true)
    }

    @Test("reserved words and type names cannot name tensors")
    func reserved() {
        #expect(errors("input f32: f32[1]") == ["1:7: 'f32' is a type name and cannot be used as an input name"])
        #expect(errors("input for: f32[1]") == ["1:7: 'for' is a reserved word and cannot be used as an input name"])
    }
}
