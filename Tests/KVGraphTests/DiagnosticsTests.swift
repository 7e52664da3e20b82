import Testing
@testable import KVGraph

@Suite("Diagnostics rendering")
struct DiagnosticsTests {
    @Test("path:line:col: error: message, the source line, and a caret under the spot")
    func rendering() {
        let text = "input x: f32[2, 8]\nweight w: f32[4, 4]\noutput y = matmul(x, w)\n"
        do {
            _ = try GraphCompiler.compile(SourceFile(path: "model.graph", text: text))
            Issue.record("expected an error")
        } catch {
            #expect(error.description == """
            model.graph:3:22: error: 'matmul': inner dimensions differ: 'x' [2, 8] by 'w' [4, 4]
                output y = matmul(x, w)
                                     ^

            """)
        }
    }

    @Test("notes follow their error; tabs keep the caret aligned")
    func notes() {
        let text = "let a = 1\n\tlet a = 2\n"
        do {
            _ = try GraphCompiler.compile(SourceFile(path: "m.graph", text: text))
        } catch {
            #expect(error.description == "m.graph:2:2: error: 'a' is already defined\n    \tlet a = 2\n    \t^\nm.graph:1:1: note: 'a' was defined here\n    let a = 1\n    ^\n")
        }
    }
}
