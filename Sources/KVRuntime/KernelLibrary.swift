import Foundation
import KVArtifact
import Synchronization

// Compiles generated Swift (Kernels.swift + Schedule.swift) into a shared library with swiftc and
// loads it with dlopen. Flags as measured in REFERENCES §3: -O with -target-cpu haswell (AVX2 and
// FMA; plain -O gives SSE and turns addProduct into fmaf calls) and -D KVPLAN_AVX2, which selects
// the generated code's 8-bit integer dot products (QuantisedDotHelpers), -parse-as-library, -emit-library,
// and a module name unique to the sources' content hash. The library is cached by that hash
// (under $KVPLAN_CACHE or the temporary directory), so identical sources compile once.
// On a CPU with AVX-VNNI (its `avx_vnni` flag in /proc/cpuinfo) the flags add `-Xcc -mavxvnni`
// and -D KVPLAN_AVXVNNI: the integer products then use `vpdpbusd` (u8 × s8 summed four at a time
// into Int32) in place of `vpmaddubsw` + `vpmaddwd`. Both compute the same integers, so results
// are bit-identical; KVPLAN_AVXVNNI=0 in the environment keeps the plain AVX2 flags. Likewise
// AVX-512 F/BW/VL adds `-Xcc -mavx512f -mavx512bw -mavx512vl -mno-gather` and -D KVPLAN_AVX512:
// the 4-bit value kernel then runs 16 lanes wide, bit-identical (KVPLAN_AVX512=0 turns it off).
// On an AMD CPU with AVX-512 (Zen 4 and later) the code is also tuned for Zen 4 (`-Xcc
// -mtune=znver4`: scheduling only, no instruction set; KVPLAN_TUNE=0 turns it off). Haswell's
// tuning made LLVM split one of the value kernel's two `vpdpwssd` per token pair into
// `vpmaddwd` + `vpaddd`; with Zen 4's the attention kernel ran 4–7% faster in L2, the rest equal.

/// A compiled and loaded generated schedule.
public final class KernelLibrary {
    /// kvplan_step(tiers, kv states, link byte counters, observe, context) — Docs/codegen.md.
    public typealias Step = @convention(c) (UnsafePointer<UnsafeMutableRawPointer>, UnsafePointer<UnsafeMutableRawPointer>, UnsafeMutablePointer<Int>,
                                            (@convention(c) (UnsafeMutableRawPointer?, Int) -> Void)?, UnsafeMutableRawPointer?) -> Void
    public typealias ABI = @convention(c) () -> Int
    typealias SetThreads = @convention(c) (Int) -> Void
    typealias Threads = @convention(c) () -> Int

    /// The library's path (in the cache).
    public let path: String
    /// True when this load compiled the sources (false: found in the cache).
    public let compiled: Bool
    private let handle: UnsafeMutableRawPointer
    /// The generated step function.
    public let step: Step
    private let threads: SetThreads
    /// The library's thread count (nil: sources emitted before kvplan_threads existed).
    private let currentThreads: Threads?

    /// Instances alive per loaded library. dlopen gives every instance of the same sources one
    /// handle, so they share one thread count and one worker pool: only the last one released
    /// stops the pool (before, releasing any of them dropped the others to one thread).
    private static let instances = Mutex<[UInt: Int]>([:])

    /// The target flags generated code is compiled with: AVX2 and FMA on x86-64 (and the define that
    /// turns on the kernels written for them); the toolchain's default elsewhere.
    public static var defaultTargetFlags: [String] {
        #if arch(x86_64)
        let environment = ProcessInfo.processInfo.environment
        return avx2Flags + (hasAVXVNNI && environment["KVPLAN_AVXVNNI"] != "0" ? vnniFlags : [])
            + (hasAVX512 && environment["KVPLAN_AVX512"] != "0" ? avx512Flags : [])
            + (isAMD && hasAVX512 && environment["KVPLAN_TUNE"] != "0" ? zenTuneFlags : [])
        #else
        return []
        #endif
    }

    /// AVX2 and FMA (any x86-64 of the last decade) with the define selecting the kernels written for
    /// them, and KVPLAN_PREFETCH (software prefetch through prefetchModule).
    public static let avx2Flags = ["-target-cpu", "haswell", "-D", "KVPLAN_AVX2", "-D", "KVPLAN_PREFETCH"]

    /// What AVX-VNNI adds to avx2Flags: the instruction set (swiftc passes it to Clang's target) and its define.
    public static let vnniFlags = ["-Xcc", "-mavxvnni", "-D", "KVPLAN_AVXVNNI"]

    /// What AVX-512 (F, BW, VL) adds to avx2Flags: the instruction sets, its define, and -mno-gather —
    /// with AVX-512 enabled LLVM turns the scale passes' eight strided header loads into
    /// `vpgatherdd`, slow on this machine (the attention kernel 4.1 → 3.3–3.5 GB/s).
    /// With AVX-512 VNNI too (`avx512_vnni`), also -D KVPLAN_AVX512VNNI: the integer key products
    /// then take a whole 32-token group per 512-bit `vpdpbusd`. With AVX-512 VBMI (`avx512vbmi`),
    /// -D KVPLAN_AVX512VBMI: those products' four channel rows are interleaved by one byte permute.
    /// With AVX-512 DQ (`avx512dq`), -D KVPLAN_AVX512DQ: the preparations' block maxima take one
    /// `vrangeps` per vector instead of `vandps` + `vmaxps` (prefetchModule's kvplan_max_magnitude;
    /// KVPLAN_AVX512DQ=0 in the environment leaves it out).
    public static let avx512Flags = ["-Xcc", "-mavx512f", "-Xcc", "-mavx512bw", "-Xcc", "-mavx512vl", "-Xcc", "-mno-gather", "-D", "KVPLAN_AVX512"]
        + (cpuFlags.contains("avx512_vnni") ? ["-Xcc", "-mavx512vnni", "-D", "KVPLAN_AVX512VNNI"] + fastDPWSSDFlags : [])
        + (cpuFlags.contains("avx512vbmi") ? ["-Xcc", "-mavx512vbmi", "-D", "KVPLAN_AVX512VBMI"] : [])
        + (cpuFlags.contains("avx512dq") && ProcessInfo.processInfo.environment["KVPLAN_AVX512DQ"] != "0" ? avx512DQFlags : [])

    /// What AVX-512 DQ adds to avx512Flags: the instruction set and its define (`vrangeps`).
    public static let avx512DQFlags = ["-Xcc", "-mavx512dq", "-D", "KVPLAN_AVX512DQ"]

    /// LLVM's `fast-dpwssd` tuning: without it the machine combiner splits a `vpdpwssd` whose
    /// accumulator chain it deems critical into `vpmaddwd` + `vpaddd` (the haswell model knows no
    /// VNNI latency), one more µop per 32 products in the value kernels' inner loop, where eight
    /// independent accumulators already hide the latency.
    public static let fastDPWSSDFlags = ["-Xcc", "-Xclang", "-Xcc", "-target-feature", "-Xcc", "-Xclang", "-Xcc", "+fast-dpwssd"]

    /// Scheduling tuned for AMD Zen 4 (no instruction set implied), for AMD CPUs with AVX-512.
    public static let zenTuneFlags = ["-Xcc", "-mtune=znver4"]

    /// /proc/cpuinfo's text, read once (nil where there is none).
    static let cpuinfo = try? String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8)

    /// True when /proc/cpuinfo names AMD as the vendor.
    static let isAMD: Bool = {
        cpuinfo?.split(separator: "\n").first(where: { $0.hasPrefix("vendor_id") })?.contains("AuthenticAMD") ?? false
    }()

    /// The flags of this CPU (Linux: /proc/cpuinfo's first `flags` line; empty elsewhere).
    static let cpuFlags: Set<Substring> = {
        guard let flags = cpuinfo?.split(separator: "\n").first(where: { $0.hasPrefix("flags") }) else { return [] }
        return Set(flags.split(separator: " "))
    }()

    /// One line naming this machine and the kernel build its generated code gets, for benchmark
    /// reports (the same emitted kernels run at different fractions of the copy on different CPUs).
    public static var hostDescription: String {
        hostDescription(cpuinfo: cpuinfo, cpus: ProcessInfo.processInfo.activeProcessorCount, targetFlags: defaultTargetFlags)
    }

    /// The host line from a /proc/cpuinfo text (nil where there is none), the logical CPU count and
    /// the target flags: the first processor's model name, family and model, then the instruction
    /// sets the flags' defines turn on, and the tuning they ask for.
    static func hostDescription(cpuinfo: String?, cpus: Int, targetFlags: [String]) -> String {
        var fields: [String: String] = [:]
        for line in (cpuinfo ?? "").split(separator: "\n", omittingEmptySubsequences: false) {
            if line.trimmingCharacters(in: .whitespaces).isEmpty { break }  // the first processor only
            let parts = line.split(separator: ":", maxSplits: 1)
            guard parts.count == 2 else { continue }
            fields[parts[0].trimmingCharacters(in: .whitespaces)] = parts[1].trimmingCharacters(in: .whitespaces)
        }
        var cpu = fields["model name"] ?? "unknown CPU"
        if let family = fields["cpu family"], let model = fields["model"] { cpu += " (family \(family), model \(model))" }
        let defines = Set(zip(targetFlags, targetFlags.dropFirst()).filter { $0.0 == "-D" }.map(\.1))
        let sets = [("KVPLAN_AVX2", "AVX2+FMA"), ("KVPLAN_AVXVNNI", "AVX-VNNI"), ("KVPLAN_AVX512", "AVX-512"),
                    ("KVPLAN_AVX512VNNI", "AVX-512 VNNI"), ("KVPLAN_AVX512VBMI", "AVX-512 VBMI"), ("KVPLAN_AVX512DQ", "AVX-512 DQ")]
            .filter { defines.contains($0.0) }.map(\.1)
        let tune = targetFlags.first { $0.hasPrefix("-mtune=") }.map { ", tuned for \($0.dropFirst("-mtune=".count))" } ?? ""
        return "host: \(cpu), \(cpus) logical CPU\(cpus == 1 ? "" : "s"); generated kernels built for "
            + (sets.isEmpty ? "the toolchain's default target" : sets.joined(separator: ", ")) + tune
    }

    /// True when this CPU has AVX-VNNI (the `avx_vnni` flag).
    public static let hasAVXVNNI = cpuFlags.contains("avx_vnni")

    /// True when this CPU has AVX-512 F, BW and VL.
    public static let hasAVX512 = ["avx512f", "avx512bw", "avx512vl"].allSatisfy { cpuFlags.contains($0) }

    /// swiftc's error diagnostics (each with its source excerpt) from `output`, warnings left
    /// out — a compiler with warnings on would otherwise push the errors past any length limit;
    /// the first 4,000 characters of `output` when it names no error.
    static func compilerErrors(_ output: String) -> String {
        var kept: [Substring] = [], inError = false
        for line in output.split(separator: "\n", omittingEmptySubsequences: false) {
            // A diagnostic starts "file:line:column: kind: "; the excerpt lines under it follow its state.
            if let kind = line.firstMatch(of: #/^\S[^ ]*:\d+:\d+: (error|warning|note): /#)?.1 {
                inError = kind == "error" || kind == "note" && inError
            }
            if inError { kept.append(line) }
        }
        let errors = kept.joined(separator: "\n")
        return String((errors.isEmpty ? output : errors).prefix(4000))
    }

    /// The C module generated sources import under KVPLAN_PREFETCH, for instructions Swift cannot
    /// reach: it has no prefetch intrinsic (`_m_prefetch` from the intrinsics module compiles to
    /// nothing), but a C inline function calling `__builtin_prefetch` is compiled by Clang into
    /// `prefetcht0`; likewise `pause`, and (with AVX-512 DQ) `vrangeps`, whose intrinsic
    /// `_mm512_range_ps` is a macro the Clang importer skips.
    static let prefetchModule = (
        header: "static inline __attribute__((always_inline)) void kvplan_prefetch(const void *p) { __builtin_prefetch(p, 0, 3); }\n"
            + "static inline __attribute__((always_inline)) void kvplan_prefetch_l2(const void *p) { __builtin_prefetch(p, 0, 2); }\n"
            + "static inline __attribute__((always_inline)) void kvplan_pause(void) { __builtin_ia32_pause(); }\n"
            + "#if defined(__AVX512DQ__)\n#include <immintrin.h>\n"
            + "/* max(|a|, |b|) with the sign cleared: vrangeps, imm 0b1011 */\n"
            + "static inline __attribute__((always_inline)) __m512 kvplan_max_magnitude(__m512 a, __m512 b) { return _mm512_range_ps(a, b, 0x0B); }\n"
            + "#endif\n",
        map: "module KVPlanPrefetch { header \"kvplan_prefetch.h\" export * }\n")

    /// Splits large kernels over `n` threads (1: none). Instances of the same sources share the
    /// setting (one loaded library).
    public func setThreads(_ n: Int) { threads(max(1, n)) }

    /// The threads large kernels are split over now (1 when the library cannot say).
    public var threadCount: Int { currentThreads?() ?? 1 }

    /// Compiles (or finds in the cache) and loads `kernels` + `schedule`, with `targetFlags` after -O
    /// (tests pass ["-target-cpu", "haswell"] alone to compile the portable paths).
    public init(kernels: String, schedule: String, targetFlags: [String] = KernelLibrary.defaultTargetFlags,
                swiftc: String = ProcessInfo.processInfo.environment["SWIFTC"] ?? "swiftc") throws(RuntimeError) {
        let hash = String(fnv1a(Array((targetFlags.joined(separator: " ") + "\u{0}" + kernels + "\u{0}" + schedule).utf8)), radix: 16)
        let root = ProcessInfo.processInfo.environment["KVPLAN_CACHE"] ?? (NSTemporaryDirectory() + "kvplan-kernels")
        let directory = "\(root)/\(hash)"
        let library = "\(directory)/libschedule.so"
        var built = false
        if !FileManager.default.fileExists(atPath: library) {
            do { try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true) } catch {
                throw RuntimeError("cannot create the kernel cache '\(directory)': \(error.localizedDescription)")
            }
            let staging = "\(directory)/build-\(getpid())-\(UUID().uuidString)"  // unique per build: threads of one process may compile the same sources at once
            do {
                try FileManager.default.createDirectory(atPath: staging, withIntermediateDirectories: true)
                try kernels.write(toFile: "\(staging)/Kernels.swift", atomically: true, encoding: .utf8)
                try schedule.write(toFile: "\(staging)/Schedule.swift", atomically: true, encoding: .utf8)
                try Self.prefetchModule.header.write(toFile: "\(staging)/kvplan_prefetch.h", atomically: true, encoding: .utf8)
                try Self.prefetchModule.map.write(toFile: "\(staging)/module.modulemap", atomically: true, encoding: .utf8)
            } catch {
                throw RuntimeError("cannot write generated sources to '\(staging)': \(error.localizedDescription)")
            }
            defer { try? FileManager.default.removeItem(atPath: staging) }
            let process = Process()
            process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
            process.arguments = [swiftc, "-O"] + targetFlags + ["-I", staging, "-parse-as-library", "-emit-library",
                                 "-module-name", "KVPlanSchedule_\(hash)", "-o", "\(staging)/libschedule.so",
                                 "\(staging)/Kernels.swift", "\(staging)/Schedule.swift"]
            let errors = Pipe()
            process.standardError = errors
            process.standardOutput = errors
            do { try process.run() } catch { throw RuntimeError("cannot run \(swiftc): \(error.localizedDescription)") }
            let output = errors.fileHandleForReading.readDataToEndOfFile()
            process.waitUntilExit()
            guard process.terminationStatus == 0 else {
                throw RuntimeError("swiftc failed on the generated sources (exit \(process.terminationStatus)):\n"
                                   + Self.compilerErrors(String(decoding: output, as: UTF8.self)))
            }
            // Publish atomically: a concurrent run sees the whole library or none.
            guard rename("\(staging)/libschedule.so", library) == 0 else { throw RuntimeError("cannot move the compiled library to '\(library)'") }
            built = true
        }
        guard let handle = dlopen(library, RTLD_NOW | RTLD_LOCAL) else {
            throw RuntimeError("dlopen '\(library)': \(String(cString: dlerror()))")
        }
        guard let step = dlsym(handle, "kvplan_step"), let abi = dlsym(handle, "kvplan_abi"), let threads = dlsym(handle, "kvplan_set_threads") else {
            dlclose(handle)
            throw RuntimeError("'\(library)' lacks kvplan_step / kvplan_abi / kvplan_set_threads")
        }
        let version = unsafeBitCast(abi, to: ABI.self)()
        guard version == ExecutionSchedule.abi else {
            dlclose(handle)
            throw RuntimeError("'\(library)' speaks calling convention \(version); this runtime speaks \(ExecutionSchedule.abi) (recompile the artifact)")
        }
        self.handle = handle
        self.path = library
        self.compiled = built
        self.step = unsafeBitCast(step, to: Step.self)
        self.threads = unsafeBitCast(threads, to: SetThreads.self)
        currentThreads = dlsym(handle, "kvplan_threads").map { unsafeBitCast($0, to: Threads.self) }
        Self.instances.withLock { $0[UInt(bitPattern: handle), default: 0] += 1 }
    }

    // The last instance of a library sets one thread first: its worker threads are stopped and
    // joined, so none runs in it once it is unmapped.
    deinit {
        let last = Self.instances.withLock { counts -> Bool in
            let key = UInt(bitPattern: handle), left = (counts[key] ?? 1) - 1
            counts[key] = left > 0 ? left : nil
            return left == 0
        }
        if last { threads(1) }
        dlclose(handle)
    }
}
