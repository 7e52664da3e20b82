import Foundation
import KVRuntime
import Testing

@Suite("KernelLibrary: compiling generated sources")
struct KernelLibraryTests {
    @Test("a swiftc failure reports its errors even behind hundreds of warnings")
    func compilerErrorsComeFirst() throws {
        // 300 warnings (unused values) before one type error: swiftc's output runs to tens of
        // kilobytes, far past any message length, before the error.
        let warnings = (0..<300).map { "func unused\($0)() { let x = \($0) }\n" }.joined()
        let kernels = warnings + "func broken() -> Int { let y: Int = \"text\"; return y }\n"
        do {
            _ = try KernelLibrary(kernels: kernels, schedule: "", targetFlags: [])
            Issue.record("the broken source compiled")
        } catch {
            #expect(error.message.hasPrefix("swiftc failed on the generated sources"))
            #expect(error.message.contains("error: cannot convert value of type 'String' to specified type 'Int'"))
            #expect(error.message.contains("func broken()"))  // the excerpt under the diagnostic
            #expect(!error.message.contains("warning:"))
        }
    }
}
