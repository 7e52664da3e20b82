import Foundation
@testable import KVRuntime
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

    @Test("the host line names the first processor's model and the instruction sets the target flags turn on")
    func hostLine() {
        let cpuinfo = """
            processor	: 0
            vendor_id	: AuthenticAMD
            cpu family	: 25
            model		: 17
            model name	: AMD EPYC
            flags		: fpu avx2 avx512f

            processor	: 1
            model name	: another CPU

            """
        let amd = ["-target-cpu", "haswell", "-D", "KVPLAN_AVX2", "-D", "KVPLAN_PREFETCH", "-Xcc", "-mavx512f", "-D", "KVPLAN_AVX512",
                   "-D", "KVPLAN_AVX512VNNI", "-D", "KVPLAN_AVX512VBMI", "-D", "KVPLAN_AVX512DQ", "-Xcc", "-mtune=znver4"]
        #expect(KernelLibrary.hostDescription(cpuinfo: cpuinfo, cpus: 2, targetFlags: amd)
                == "host: AMD EPYC (family 25, model 17), 2 logical CPUs; generated kernels built for AVX2+FMA, AVX-512, AVX-512 VNNI, AVX-512 VBMI, AVX-512 DQ, tuned for znver4")
        #expect(KernelLibrary.hostDescription(cpuinfo: cpuinfo, cpus: 1, targetFlags: KernelLibrary.avx2Flags)
                == "host: AMD EPYC (family 25, model 17), 1 logical CPU; generated kernels built for AVX2+FMA")
        #expect(KernelLibrary.hostDescription(cpuinfo: nil, cpus: 8, targetFlags: [])
                == "host: unknown CPU, 8 logical CPUs; generated kernels built for the toolchain's default target")
    }
}
