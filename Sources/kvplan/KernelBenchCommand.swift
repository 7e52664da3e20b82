import ArgumentParser
import Foundation
import KVInspect
import KVArtifact
import KVCodegen
import KVQuant
import KVRuntime

// `kvplan bench kernels`: generated kernels against baselines measured in the same run — the
// machine's copy bandwidth (the faster of memcpy and a streaming copy of the same bytes,
// CopyBandwidth.swift), a plain scalar Swift loop, and for f32
// GEMV OpenBLAS's cblas_sgemv single-threaded (loaded with dlopen from libopenblas-dev's
// libopenblas.so.0; skipped and said so when absent). Each kernel is emitted by SwiftEmitter for a
// one-op program, compiled by KernelLibrary exactly as `kvplan run` does, and timed through the
// generated step function. Times: the best of 5 batches, each ≥ 50 ms; the copies and OpenBLAS
// are timed in turns with the kernel, batch by batch (timeInTurns).

/// `kvplan bench kernels`.
struct KernelBench: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "kernels",
        abstract: "Generated kernels (GEMV over f32, f16, bf16, q8_0, q4_0 weights; packed-KV attention; norms, softmax, rope, elementwise, embed) vs the copy bandwidth, a scalar loop and OpenBLAS (release build).",
        discussion: """
        Shapes: an L2-sized and a DRAM-sized instance per family; attention both grouped-query \
        (4 query heads per KV head, as Llama-3 and Mistral) and multi-head (as Llama-2). GB/s \
        counts the bytes a kernel must read (weights; the packed cache) once; memcpy's GB/s counts \
        the bytes copied (read once, written once), the usual 'copy bandwidth', and so does a \
        streaming copy (non-temporal stores); ratios are against the faster of the two. Both are \
        timed in turns with the GEMV and attention kernels they are compared with. Row-wise and \
        elementwise kernels are measured by traffic (bytes read + written), the copies likewise \
        (twice the bytes copied).
        """
    )

    @Option(name: .shortAndLong, help: "Write the Markdown report here (default: standard output).")
    var output: String?

    @Option(help: "Families to measure: all (default), gemv, attention or rowwise (norms, softmax, rope, elementwise, embed).")
    var family: String = "all"

    @Option(help: "Threads for the generated kernels, the copies and OpenBLAS alike (the scalar loop stays on one); 1...64.")
    var threads: Int = 1

    @Option(name: .customLong("attention-shape"),
            help: "Attention shapes to measure, repeatable: \(AttentionShape.all.map(\.name).joined(separator: ", ")) (default: all).")
    var attentionShapes: [String] = []

    @Option(help: ArgumentHelp("Write each measured attention shape's emitted kernels to DIR/attention-<shape>.swift, to read or to edit for --sources.",
                               valueName: "dir"))
    var saveSources: String?

    @Option(help: ArgumentHelp("Time DIR/attention-<shape>.swift (an edited copy of --save-sources' output) instead of the emitted kernels, for each shape that has one; its row says so.",
                               valueName: "dir"))
    var sources: String?

    @Flag(help: "Do not time the attention's scalar loop (seconds at DRAM size); it still runs once to check the kernels' result.")
    var noScalarTiming = false

    func run() throws {
        let families = ["all", "gemv", "attention", "rowwise"]
        guard families.contains(family) else {
            printError("error: --family: expected one of \(families.joined(separator: ", ")), got '\(family)'\n")
            throw ExitCode(64)
        }
        guard (1...64).contains(threads) else {
            printError("error: --threads: expected 1...64, got \(threads)\n")
            throw ExitCode(64)
        }
        let wants = { (f: String) in family == "all" || family == f }
        let attentionOptions = [("--attention-shape", !attentionShapes.isEmpty), ("--save-sources", saveSources != nil),
                                ("--sources", sources != nil), ("--no-scalar-timing", noScalarTiming)]
        if !wants("attention"), let (flag, _) = attentionOptions.first(where: \.1) {
            printError("error: \(flag) applies only to the attention family (--family attention or all), not '\(family)'\n")
            throw ExitCode(64)
        }
        if let unknown = attentionShapes.first(where: { name in !AttentionShape.all.contains { $0.name == name } }) {
            printError("error: --attention-shape: expected one of \(AttentionShape.all.map(\.name).joined(separator: ", ")), got '\(unknown)'\n")
            throw ExitCode(64)
        }
        var isDirectory: ObjCBool = false
        if let sources, !(FileManager.default.fileExists(atPath: sources, isDirectory: &isDirectory) && isDirectory.boolValue) {
            printError("error: --sources: '\(sources)' is not a directory\n")
            throw ExitCode(1)
        }
        if let saveSources, let sources, Self.sameDirectory(saveSources, sources) {
            printError("error: --save-sources and --sources name the same directory '\(sources)': the emitted kernels would overwrite the edited ones\n")
            throw ExitCode(64)
        }
        let shapes = AttentionShape.all.filter { attentionShapes.isEmpty || attentionShapes.contains($0.name) }
        let progress = ProgressLine("bench kernels")
        defer { progress.finish() }
        var rows: [String] = []
        if wants("gemv") || wants("attention") {
            rows.append("| kernel | shape | bytes read | generated GB/s | GFLOP/s | scalar loop GB/s | OpenBLAS GB/s | memcpy GB/s | streaming copy GB/s | generated / copy | generated / OpenBLAS |")
            rows.append("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
        }
        if wants("gemv") {
            let blas = OpenBLAS(threads: threads)
            if blas == nil { printError("note: OpenBLAS not found (apt-get install libopenblas-dev): its column is empty\n") }
            // q8_0 and q4_0 twice: row-major (ggml's order, what tiled plans read) and interleaved
            // (what whole linear kernels read when rows come in groups of 16; WeightLayout).
            let variants = WeightFormat.allCases.map { ($0, WeightLayout?.none) } + WeightLayout.allCases.map { ($0.format, Optional($0)) }
            for (format, layout) in variants {
                // L2: 256 rows of 512 (≤ 512 KiB in every format); DRAM: rows of 4096 making 64 MiB in the format
                // (whole groups of 16 when interleaved).
                let dramRows = (64 << 20) / format.bytes(count: 4096) / (layout == nil ? 1 : 16) * (layout == nil ? 1 : 16)
                for (rowsN, k, label) in [(256, 512, "L2"), (dramRows, 4096, "DRAM")] {
                    progress.stage("\(layout?.rawValue ?? format.rawValue) gemv \(rowsN)x\(k) (\(label))")
                    rows.append(try gemv(rows: rowsN, k: k, label: label, blas: blas, format: format, layout: layout))
                }
            }
        }
        if wants("attention") {
            if let saveSources {
                do { try FileManager.default.createDirectory(atPath: saveSources, withIntermediateDirectories: true) } catch {
                    printError("error: --save-sources: cannot create '\(saveSources)': \(error.localizedDescription)\n")
                    throw ExitCode(1)
                }
            }
            for shape in shapes {
                progress.stage("attention ctx \(shape.ctx), \(shape.kvHeads * shape.group)/\(shape.kvHeads) heads, 4-bit (\(shape.label))")
                rows.append(try attention(shape))
            }
        }
        if wants("rowwise") {
            if !rows.isEmpty { rows.append("") }
            rows.append("| kernel | shape | traffic (read + written) | generated GB/s | GFLOP/s | scalar loop GB/s | memcpy GB/s (traffic) | streaming copy GB/s (traffic) | generated / copy | generated / scalar loop |")
            rows.append("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|")
            for f in RowwiseFamily.all {
                // L2: 32 rows (x and y 128 KiB each); DRAM: 8192 rows (32 MiB each).
                for (n, label) in [(32, "L2"), (8192, "DRAM")] {
                    progress.stage("\(f.name) \(n)x1024 (\(label))")
                    rows.append(try rowwise(f, rows: n, label: label))
                }
            }
        }
        let text = "kvplan bench kernels\(threads > 1 ? " --threads \(threads)" : "") (\(Self.date()))\n\n\(KernelLibrary.hostDescription)\n\n" + rows.joined(separator: "\n") + "\n"
        if let output { try writeAtomically(text, to: output) } else { print(text, terminator: "") }
    }

    /// Whether two paths name one directory (after symbolic links; a path not there yet is
    /// compared as written, standardised).
    static func sameDirectory(_ a: String, _ b: String) -> Bool {
        let resolve = { (p: String) in URL(fileURLWithPath: p).standardizedFileURL.resolvingSymlinksInPath().path }
        return resolve(a) == resolve(b)
    }

    static func date() -> String {
        let f = DateFormatter()
        f.dateFormat = "yyyy-MM-dd"
        f.timeZone = TimeZone(identifier: "UTC")
        return f.string(from: Date())
    }

    /// Seconds per call of `body`: the best of 5 batches, each long enough to time.
    static func time(_ body: () -> Void) -> Double {
        body()
        var calls = 1
        while true {
            let start = ContinuousClock.now
            for _ in 0..<calls { body() }
            if (ContinuousClock.now - start) / .seconds(1) > 0.05 || calls >= 1 << 24 { break }
            calls *= 2
        }
        var best = Double.infinity
        for _ in 0..<5 {
            let start = ContinuousClock.now
            for _ in 0..<calls { body() }
            best = min(best, (ContinuousClock.now - start) / .seconds(1) / Double(calls))
        }
        return best
    }

    /// Seconds per call of `body` over `calls` calls in a row, timed once (for copies long enough
    /// to time, sampled between other work).
    static func seconds(_ body: () -> Void, calls: Int = 1) -> Double {
        let start = ContinuousClock.now
        for _ in 0..<calls { body() }
        return (ContinuousClock.now - start) / .seconds(1) / Double(calls)
    }

    /// Seconds per call of each of `bodies`, timed in turns (a batch of each in order, five
    /// times; the best batch of each), each batch long enough to time: on a shared machine they
    /// all see the same neighbours, so their ratios move far less between runs than figures
    /// measured seconds apart. (`time` stays as it is: timed through other helpers, the scalar
    /// attention loop compiled differently and ran 3× slower, measured.)
    static func timeInTurns(_ bodies: [() -> Void]) -> [Double] {
        var calls = [Int](repeating: 1, count: bodies.count)
        for (i, body) in bodies.enumerated() {
            body()
            while calls[i] < 1 << 24 {
                let start = ContinuousClock.now
                for _ in 0..<calls[i] { body() }
                if (ContinuousClock.now - start) / .seconds(1) > 0.05 { break }
                calls[i] *= 2
            }
        }
        var best = [Double](repeating: .infinity, count: bodies.count)
        for _ in 0..<5 {
            for (i, body) in bodies.enumerated() {
                let start = ContinuousClock.now
                for _ in 0..<calls[i] { body() }
                best[i] = min(best[i], (ContinuousClock.now - start) / .seconds(1) / Double(calls[i]))
            }
        }
        return best
    }

    /// Seconds per call of each of `bodies` and per copy of `copier`'s bytes with memcpy and with
    /// the streaming copy (CopyBandwidth.swift), all timed in turns.
    static func timeInTurns(_ bodies: [() -> Void], against copier: Copier) -> (seconds: [Double], copy: CopyTimes) {
        let seconds = timeInTurns(bodies + [copier.copy, copier.streamingCopy])
        return (Array(seconds.prefix(bodies.count)), CopyTimes(memcpy: seconds[bodies.count], streaming: seconds[bodies.count + 1]))
    }

    /// Seconds per copy of `bytes` with memcpy and with the streaming copy, timed in turns, each
    /// split in `threads` contiguous parts copied at once.
    static func copySeconds(_ bytes: Int, threads: Int = 1) -> CopyTimes {
        timeInTurns([], against: Copier(bytes, threads: threads)).copy
    }

    /// A one-op program and its schedule with everything in one arena (tier 0).
    static func oneOp(_ tensors: [ModelProgram.Tensor], _ op: ModelProgram.Op, bytes: [Int], kv: [ExecutionSchedule.KVCache] = [],
                      extraResults: [Int] = []) -> (ModelProgram, ExecutionSchedule, offsets: [Int]) {
        var offsets: [Int] = [], at = 0
        for b in bytes {
            offsets.append(at)
            at += (b + 63) / 64 * 64
        }
        let program = ModelProgram(model: "bench", dimensions: [:], tensors: tensors, ops: [op])
        let location = { (i: Int) in ExecutionSchedule.Location(tier: 0, offset: offsets[i]) }
        let action = ExecutionSchedule.Action.kernel(slot: 1, op: 0, operands: op.operands.map(location),
                                                     results: (op.results + extraResults).map(location))
        let schedule = ExecutionSchedule(model: "bench", target: "bench", arenas: [.init(name: "arena", bytes: at)], links: [], linkBytes: [],
                                         weights: [], inputs: [], outputs: [], kv: kv, actions: [action])
        return (program, schedule, offsets)
    }

    func gemv(rows: Int, k: Int, label: String, blas: OpenBLAS?, format: WeightFormat = .f32, layout: WeightLayout? = nil) throws -> String {
        let weightBytes = rows * format.bytes(count: k)
        let tensors = [ModelProgram.Tensor(name: "x", kind: "input", dtype: "f32", shape: [1, k]),
                       ModelProgram.Tensor(name: "w", kind: "weight", dtype: format.rawValue, shape: [rows, k]),
                       ModelProgram.Tensor(name: "y", kind: "output", dtype: "f32", shape: [1, rows])]
        let op = ModelProgram.Op(name: "y", kind: "matmul", operands: [0, 1], results: [2], updates: [], attributes: ["transpose_b": .bool(true)])
        var (program, schedule, offsets) = Self.oneOp(tensors, op, bytes: [k * 4, weightBytes, rows * 4])
        schedule.weights = [.init(tensor: "w", dtype: format.rawValue, location: .init(tier: 0, offset: offsets[1]), bytes: weightBytes, layout: layout?.rawValue)]
        try schedule.validate(against: program)
        let (kernels, step) = try SwiftEmitter(program: program, schedule: schedule).emit()
        let library = try KernelLibrary(kernels: kernels, schedule: step)
        library.setThreads(threads)
        let arena = UnsafeMutableRawPointer.allocate(byteCount: schedule.arenas[0].bytes, alignment: 4096)
        defer { arena.deallocate() }
        let floats = arena.bindMemory(to: Float.self, capacity: schedule.arenas[0].bytes / 4)
        for i in 0..<schedule.arenas[0].bytes / 4 { floats[i] = Float(i % 97) / 97 - 0.5 }
        let x = floats + offsets[0] / 4, y = floats + offsets[2] / 4
        let w = UnsafeMutableRawPointer(floats + offsets[1] / 4)
        // The weights in their storage format, row by row; the plain loop reads them so. An
        // interleaved layout is arranged for the generated kernel after the plain loop has run.
        let row = (0..<k).map { Float($0 % 89) / 89 - 0.5 }
        let encoded = format.encode(row)!
        if format != .f32 {
            for j in 0..<rows { encoded.withUnsafeBytes { (w + j * encoded.count).copyMemory(from: $0.baseAddress!, byteCount: encoded.count) } }
        }
        let rowMajor = layout == nil ? nil : Array(UnsafeRawBufferPointer(start: w, count: weightBytes))
        if let layout, let rowMajor {
            layout.arrange(rowMajor, rows: rows, columns: k).withUnsafeBytes { w.copyMemory(from: $0.baseAddress!, byteCount: weightBytes) }
        }
        let tiers = [arena]
        let state = [arena]
        var links = [0]
        // The generated GEMV, (f32) OpenBLAS over the same operands and the copies of its weight
        // bytes, timed in turns.
        let wf = w.assumingMemoryBound(to: Float.self)
        var bodies: [() -> Void] = [{
            tiers.withUnsafeBufferPointer { t in state.withUnsafeBufferPointer { s in library.step(t.baseAddress!, s.baseAddress!, &links, nil, nil) } }
        }]
        if let blas, format == .f32 { bodies.append { blas.sgemv(rows, k, wf, x, y) } }
        let (seconds, copy) = Self.timeInTurns(bodies, against: Copier(weightBytes, threads: threads))
        let generated = seconds[0], blasSeconds = seconds.count > 1 ? seconds[1] : nil
        // The generated kernel's output, computed again: OpenBLAS wrote y last.
        tiers.withUnsafeBufferPointer { t in state.withUnsafeBufferPointer { s in library.step(t.baseAddress!, s.baseAddress!, &links, nil, nil) } }
        let reference = Array(UnsafeBufferPointer(start: y, count: rows))
        let rowBytes = format.bytes(count: k)
        rowMajor?.withUnsafeBytes { w.copyMemory(from: $0.baseAddress!, byteCount: weightBytes) }  // the plain loop reads rows
        let scalar = Self.time {
            for j in 0..<rows { y[j] = Self.scalarDot(x, w + j * rowBytes, k, format) }
        }
        let scalarOut = Array(UnsafeBufferPointer(start: y, count: rows))
        if let blas, format == .f32 {
            blas.sgemv(rows, k, wf, x, y)
            let d = zip(reference, UnsafeBufferPointer(start: y, count: rows)).map { abs($0 - $1) }.max() ?? 0
            if d > 1e-2 { printError("warning: OpenBLAS and the generated GEMV differ by \(d)\n") }
        }
        // q8_0/q4_0 multiply the activation rounded to int8 per block (as the reference does), which
        // the plain loop above does not: the check repeats it over the rounded activation (untimed).
        var expected = scalarOut
        if ActivationQuantisation.applies(to: format) {
            let rounded = ActivationQuantisation.roundTrip(Array(UnsafeBufferPointer(start: x, count: k))[...])
            expected = rounded.withUnsafeBufferPointer { xr in (0..<rows).map { Self.scalarDot(xr.baseAddress!, w + $0 * rowBytes, k, format) } }
        }
        let d = zip(reference, expected).map { abs($0 - $1) }.max() ?? 0
        if d > 1e-2 { printError("warning: the scalar loop and the generated \(format.rawValue) GEMV differ by \(d)\n") }
        let gb = { (s: Double) in Double(weightBytes) / s / 1e9 }
        return "| \(layout?.rawValue ?? format.rawValue) GEMV (\(label)) | \(rows)×\(k) | \(Self.size(weightBytes)) | \(f2(gb(generated))) | \(f2(2 * Double(rows * k) / generated / 1e9)) | "
            + "\(f2(gb(scalar))) | \(blasSeconds.map { f2(gb($0)) } ?? "–") | \(f2(gb(copy.memcpy))) | \(f2(gb(copy.streaming))) | \(f2(copy.best / generated)) | "
            + "\(blasSeconds.map { f2($0 / generated) } ?? "–") |"
    }

    /// The plain loop a GEMV row is measured against: element by element, decoding the format inline.
    static func scalarDot(_ x: UnsafePointer<Float>, _ row: UnsafeRawPointer, _ k: Int, _ format: WeightFormat) -> Float {
        var s: Float = 0
        switch format {
        case .f32:
            let r = row.assumingMemoryBound(to: Float.self)
            for i in 0..<k { s += r[i] * x[i] }
        case .f16:
            for i in 0..<k { s += Float(Float16(bitPattern: row.loadUnaligned(fromByteOffset: 2 * i, as: UInt16.self))) * x[i] }
        case .bf16:
            for i in 0..<k { s += Float(bitPattern: UInt32(row.loadUnaligned(fromByteOffset: 2 * i, as: UInt16.self)) << 16) * x[i] }
        case .q8_0:
            for b in 0..<k / 32 {
                let d = Float(Float16(bitPattern: row.loadUnaligned(fromByteOffset: 34 * b, as: UInt16.self)))
                for i in 0..<32 { s += Float(row.load(fromByteOffset: 34 * b + 2 + i, as: Int8.self)) * d * x[32 * b + i] }
            }
        case .q4_0:
            for b in 0..<k / 32 {
                let d = Float(Float16(bitPattern: row.loadUnaligned(fromByteOffset: 18 * b, as: UInt16.self)))
                for i in 0..<16 {
                    let byte = row.load(fromByteOffset: 18 * b + 2 + i, as: UInt8.self)
                    s += Float(Int(byte & 15) - 8) * d * x[32 * b + i] + Float(Int(byte >> 4) - 8) * d * x[32 * b + 16 + i]
                }
            }
        }
        return s
    }

    /// One attention instance of the benchmark, named for --attention-shape.
    struct AttentionShape {
        let name: String, ctx: Int, kvHeads: Int, group: Int, label: String

        /// Grouped-query attention as Llama-3 and Mistral use it (4 query heads per KV head), then
        /// multi-head attention as Llama-2-7B (one per KV head); 40 MiB of packed cache at DRAM
        /// size either way.
        static let all = [AttentionShape(name: "gqa-l2", ctx: 512, kvHeads: 2, group: 4, label: "L2"),
                          AttentionShape(name: "gqa-dram", ctx: 32768, kvHeads: 8, group: 4, label: "DRAM"),
                          AttentionShape(name: "mha-l2", ctx: 512, kvHeads: 2, group: 1, label: "L2"),
                          AttentionShape(name: "mha-dram", ctx: 8192, kvHeads: 32, group: 1, label: "DRAM")]
    }

    /// The emitted kernels of `shape`, or the edited copy --sources names for it, with that
    /// file's path when it differs from them; the emitted ones saved for --save-sources.
    func attentionKernels(_ shape: AttentionShape, emitted: String) throws -> (source: String, editedFile: String?) {
        let file = "attention-\(shape.name).swift"
        if let saveSources {
            do { try writeAtomically(emitted, to: "\(saveSources)/\(file)") } catch {
                printError("error: --save-sources: cannot write '\(saveSources)/\(file)': \(error.localizedDescription)\n")
                throw ExitCode(1)
            }
        }
        guard let sources else { return (emitted, nil) }
        let path = "\(sources)/\(file)"
        guard FileManager.default.fileExists(atPath: path) else {
            printError("note: --sources: no '\(path)'; the emitted kernels are timed for \(shape.name)\n")
            return (emitted, nil)
        }
        do {
            let edited = try String(contentsOfFile: path, encoding: .utf8)
            printError("note: timing the kernels in '\(path)' for \(shape.name), not the emitted ones\n")
            return (edited, edited != emitted ? path : nil)
        } catch {
            printError("error: --sources: cannot read '\(path)': \(error.localizedDescription)\n")
            throw ExitCode(1)
        }
    }

    func attention(_ shape: AttentionShape) throws -> String {
        let (ctx, kvHeads, group, label) = (shape.ctx, shape.kvHeads, shape.group, shape.label)
        let (heads, d) = (kvHeads * group, 128)
        let c = kvHeads * d
        let layout = KVLayerLayout(layer: 0, sinkTokens: 0, windowTokens: 0, highTokens: ctx, keyBitsHigh: 4, valueBitsHigh: 4,
                                   lowTokens: 0, lowBits: 0, bytes: 0, fidelity: 0)
        let keyLayout = KVSegmentLayout(kind: .keys, tokens: ctx, channels: c, bits: .b4), valueLayout = KVSegmentLayout(kind: .values, tokens: ctx, channels: c, bits: .b4)
        let tensors = [ModelProgram.Tensor(name: "q", kind: "activation", dtype: "f32", shape: [1, heads * d]),
                       ModelProgram.Tensor(name: "k", kind: "activation", dtype: "f32", shape: [1, c]),
                       ModelProgram.Tensor(name: "v", kind: "activation", dtype: "f32", shape: [1, c]),
                       ModelProgram.Tensor(name: "kc", kind: "cache", dtype: "f32", shape: [1, ctx, kvHeads, d]),
                       ModelProgram.Tensor(name: "vc", kind: "cache", dtype: "f32", shape: [1, ctx, kvHeads, d]),
                       ModelProgram.Tensor(name: "y", kind: "activation", dtype: "f32", shape: [1, heads * d]),
                       ModelProgram.Tensor(name: "kn", kind: "activation", dtype: "f32", shape: [1, c]),
                       ModelProgram.Tensor(name: "vn", kind: "activation", dtype: "f32", shape: [1, c])]
        let op = ModelProgram.Op(name: "a", kind: "attention", operands: [0, 1, 2, 3, 4], results: [5], updates: [3, 4],
                                 attributes: ["heads": .int(heads), "kv_heads": .int(kvHeads)])
        let bytes = [heads * d * 4, c * 4, c * 4, keyLayout.bytes, valueLayout.bytes, heads * d * 4, c * 4, c * 4]
        var (program, schedule, offsets) = Self.oneOp(tensors, op, bytes: bytes, extraResults: [6, 7])
        let at = { (i: Int) in ExecutionSchedule.Location(tier: 0, offset: offsets[i]) }
        schedule.kv = [.init(op: 0, keys: at(3), values: at(4), keyBytes: bytes[3], valueBytes: bytes[4], newKeys: at(6), newValues: at(7),
                             batch: 1, capacity: ctx, channels: c, kvHeads: kvHeads, layout: layout)]
        program.ops[0].updates = [3, 4]
        let (emitted, step) = try SwiftEmitter(program: program, schedule: schedule).emit()
        let (kernels, editedFile) = try attentionKernels(shape, emitted: emitted)
        let edited = editedFile != nil
        let library: KernelLibrary
        do { library = try KernelLibrary(kernels: kernels, schedule: step) } catch {
            // swiftc names the staged copy it compiled; point at the file the user edited instead.
            let message = editedFile.map { path in
                "\(path): " + "\(error)".replacingOccurrences(of: #"\S*/build-[^/\s]*/Kernels\.swift"#, with: path, options: .regularExpression)
            } ?? "the emitted attention kernels: \(error)"
            printError("error: \(message)\n")
            throw ExitCode(1)
        }
        library.setThreads(threads)
        let arena = UnsafeMutableRawPointer.allocate(byteCount: schedule.arenas[0].bytes, alignment: 4096)
        defer { arena.deallocate() }
        // A full cache of packed noise, group by group (valid scales), and a random query.
        var rng: UInt64 = 7
        let noise = { (n: Int) in
            (0..<n).map { _ in
                rng = rng &* 6364136223846793005 &+ 1442695040888963407
                return Float(rng >> 40) / Float(1 << 23) - 1
            }
        }
        for g in stride(from: 0, to: ctx, by: 32) {
            // Keys are packed group by group, then stored head-major as the cache keeps them
            // (KVSegmentLayout: each KV head's channel rows of every group contiguous).
            let keys = KVPack.pack(noise(32 * c), KVSegmentLayout(kind: .keys, tokens: 32, channels: c, bits: .b4))
            let headGroupBytes = keys.count / kvHeads
            keys.withUnsafeBytes { packed in
                for h in 0..<kvHeads {
                    (arena + offsets[3] + h * (ctx / 32) * headGroupBytes + g / 32 * headGroupBytes)
                        .copyMemory(from: packed.baseAddress! + h * headGroupBytes, byteCount: headGroupBytes)
                }
            }
            // Values are packed token by token, then stored head-major as the cache keeps them
            // (KVSegmentLayout: each KV head's rows contiguous).
            let values = KVPack.pack(noise(32 * c), KVSegmentLayout(kind: .values, tokens: 32, channels: c, bits: .b4))
            let rowBytes = values.count / 32, headBytes = rowBytes / kvHeads
            values.withUnsafeBytes { packed in
                for t in 0..<32 {
                    for h in 0..<kvHeads {
                        (arena + offsets[4] + (h * ctx + g + t) * headBytes).copyMemory(from: packed.baseAddress! + t * rowBytes + h * headBytes, byteCount: headBytes)
                    }
                }
            }
        }
        for (i, value) in noise(heads * d + 2 * c).enumerated() { arena.storeBytes(of: value, toByteOffset: offsets[0] + 4 * i, as: Float.self) }
        let stateBlock = UnsafeMutableRawPointer.allocate(byteCount: schedule.kv[0].stateLayout.total, alignment: 64)
        defer { stateBlock.deallocate() }
        memset(stateBlock, 0, schedule.kv[0].stateLayout.total)  // occupancy 0 everywhere: every slot held
        let tiers = [arena], state = [stateBlock]
        var links = [0]
        let read = bytes[3] + bytes[4]
        let (seconds, copy) = Self.timeInTurns([{
            tiers.withUnsafeBufferPointer { t in state.withUnsafeBufferPointer { s in library.step(t.baseAddress!, s.baseAddress!, &links, nil, nil) } }
        }], against: Copier(read, threads: threads))
        let generated = seconds[0]
        // The scalar loop: dequantise every key and value code by code, then plain softmax.
        let keyBase = UnsafeRawPointer(arena + offsets[3]), valueBase = UnsafeRawPointer(arena + offsets[4])
        let q = UnsafePointer((arena + offsets[0]).assumingMemoryBound(to: Float.self))
        var out = [Float](repeating: 0, count: heads * d)
        let kNew = q + heads * d, vNew = q + heads * d + c
        let scalarLoop = {
            Self.scalarAttention(q: q, keys: keyBase, values: valueBase, kNew: kNew, vNew: vNew, ctx: ctx, heads: heads, kvHeads: kvHeads, d: d, out: &out)
        }
        let scalar: Double? = noScalarTiming ? nil : Self.time(scalarLoop)
        if noScalarTiming { scalarLoop() }
        let y = UnsafePointer((arena + offsets[5]).assumingMemoryBound(to: Float.self))
        let diff = (0..<heads * d).map { abs(out[$0] - y[$0]) }.max() ?? 0
        if diff > 1e-3 { printError("warning: the scalar loop and the \(edited ? "edited" : "generated") attention differ by \(diff)\n") }
        let gb = { (s: Double) in Double(read) / s / 1e9 }
        let flops = 4 * Double(heads * ctx * d)
        return "| attention \(group == 1 ? "MHA" : "GQA-\(group)"), 4-bit K/V (\(label))\(edited ? " [edited source]" : "") | ctx \(ctx), \(heads)/\(kvHeads) heads, d \(d) | \(Self.size(read)) | \(f2(gb(generated))) | "
            + "\(f2(flops / generated / 1e9)) | \(scalar.map { f2(gb($0)) } ?? "–") | – | \(f2(gb(copy.memcpy))) | \(f2(gb(copy.streaming))) | \(f2(copy.best / generated)) | – |"
    }

    /// Plain scalar decode attention over a fully occupied 4-bit KIVI segment and the new token (the baseline).
    static func scalarAttention(q: UnsafePointer<Float>, keys: UnsafeRawPointer, values: UnsafeRawPointer, kNew: UnsafePointer<Float>,
                                vNew: UnsafePointer<Float>, ctx: Int, heads: Int, kvHeads: Int, d: Int, out: inout [Float]) {
        func half(_ p: UnsafeRawPointer, _ o: Int) -> Float { Float(Float16(bitPattern: p.loadUnaligned(fromByteOffset: o, as: UInt16.self))) }
        let keyGroupBytes = d * (4 + 16), valueHeadBytes = d / 32 * (4 + 16)  // one KV head's part of a key group; of a value row
        var logits = [Float](repeating: 0, count: ctx + 1)
        for h in 0..<heads {
            let g = h / (heads / kvHeads)
            var sNew: Float = 0
            for i in 0..<d { sNew += q[h * d + i] * kNew[g * d + i] }
            logits[ctx] = sNew / Float(d).squareRoot()
            for t in 0..<ctx {
                var s: Float = 0
                for i in 0..<d {
                    let p = keys + (g * ctx / 32 + t / 32) * keyGroupBytes + i * 20
                    let byte = p.load(fromByteOffset: 4 + (t % 32) / 2, as: UInt8.self)
                    let code = (t % 2 == 0) ? byte & 15 : byte >> 4
                    s += q[h * d + i] * (Float(code) * half(p, 0) + half(p, 2))
                }
                logits[t] = s / Float(d).squareRoot()
            }
            let m = logits.max()!
            var total: Float = 0
            for t in 0...ctx { logits[t] = exp(logits[t] - m); total += logits[t] }
            for i in 0..<d {
                var acc: Float = logits[ctx] * vNew[g * d + i]
                for t in 0..<ctx {
                    let p = values + (g * ctx + t) * valueHeadBytes + (i / 32) * 20
                    let byte = p.load(fromByteOffset: 4 + (i % 32) / 2, as: UInt8.self)
                    let code = (i % 2 == 0) ? byte & 15 : byte >> 4
                    acc += logits[t] * (Float(code) * half(p, 0) + half(p, 2))
                }
                out[h * d + i] = acc / total
            }
        }
    }

    static func size(_ bytes: Int) -> String { bytes >= 1 << 20 ? String(format: "%.1f MiB", Double(bytes) / 1048576) : "\(bytes / 1024) KiB" }
}

/// Two decimals, as the benchmark tables print them.
func f2(_ x: Double) -> String { String(format: "%.2f", x) }

/// cblas_sgemv from libopenblas, loaded at run time so kvplan does not link it.
struct OpenBLAS {
    typealias SGEMV = @convention(c) (Int32, Int32, Int32, Int32, Float, UnsafePointer<Float>, Int32, UnsafePointer<Float>, Int32, Float,
                                      UnsafeMutablePointer<Float>, Int32) -> Void
    let gemv: SGEMV

    init?(threads n: Int = 1) {
        guard let handle = dlopen("libopenblas.so.0", RTLD_NOW) ?? dlopen("libopenblas.so", RTLD_NOW),
              let f = dlsym(handle, "cblas_sgemv"), let threads = dlsym(handle, "openblas_set_num_threads") else { return nil }
        unsafeBitCast(threads, to: (@convention(c) (Int32) -> Void).self)(Int32(n))
        gemv = unsafeBitCast(f, to: SGEMV.self)
    }

    /// y = W x, W row-major rows × k.
    func sgemv(_ rows: Int, _ k: Int, _ w: UnsafePointer<Float>, _ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>) {
        gemv(101 /* CblasRowMajor */, 111 /* CblasNoTrans */, Int32(rows), Int32(k), 1, w, Int32(k), x, 1, 0, y, 1)
    }
}

/// `kvplan bench run`: decode speed of a compiled artifact against its memory roofline.
struct RunBench: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "run",
        abstract: "Decode ms/token of an artifact's generated schedule and its fraction of the memory roofline (release build).",
        discussion: """
        Roofline: the bytes the plan moves per token (every link, as counted by the run) divided by \
        the machine's copy bandwidth, measured in the same run as the faster of memcpy and a \
        streaming copy (non-temporal stores) of a 64 MiB buffer, sampled between the tokens (before \
        the first, after every 64th and after the last; the best sample of each copy), so that on a \
        shared machine the copies and the tokens see the same neighbours. The token after a sample \
        finds the caches flushed; the median does not notice 1 token in 64. With --threads N the \
        copies run on N threads as well. A \
        second, stricter roofline copies one step's bytes, which stay in the caches when they fit \
        (as a small model's weights do between steps). The reference interpreter's ms/token on the \
        same artifact is the baseline.
        """
    )

    @Argument(help: "An artifact directory.")
    var directory: String = "Generated/tiny-llama/cpu"

    @Option(help: "Decode steps timed.")
    var tokens: Int = 256

    @Option(help: "Threads for the generated kernels, the planned transfers and the copies; 1...64.")
    var threads: Int = 1

    func run() throws {
        // Out-of-range flags are usage errors (exit 64), as in bench kernels.
        for (flag, value, range) in [("--tokens", tokens, 1...100_000), ("--threads", threads, 1...64)] where !range.contains(value) {
            printError("error: \(flag): expected \(range.lowerBound)...\(range.upperBound), got \(value)\n")
            throw ExitCode(64)
        }
        try reportingBadInput(execute)
    }

    private func execute() throws {
        let artifact = ArtifactDirectory(path: directory)
        let program = try artifact.decode(ModelProgram.self, "program.json"), schedule = try artifact.decode(ExecutionSchedule.self, "schedule.json")
        let plan = try artifact.decode(Plan.self, "plan.json")
        let capacity = schedule.kv.map(\.capacity).min() ?? Int.max
        guard tokens <= capacity else { throw UserError("--tokens \(tokens): the KV cache holds \(capacity)") }
        let weights = SeededWeights.make(program, seed: 0)
        do {
            var generator = try Generator(try ScheduleExecutor(program: program, schedule: schedule, kernels: try artifact.text("Kernels.swift"),
                                                               step: try artifact.text("Schedule.swift"), weights: weights, threads: threads))
            let progress = ProgressLine("bench run")
            defer { progress.finish() }
            progress.stage("generated schedule")
            // The copies the rooflines come from are timed between the tokens — before the first,
            // every 64th and after the last, the best of each kept — so that on a shared host they
            // see the neighbours the tokens see (timed after the run, one reading put the f32
            // decode at 134% of its roofline).
            // With --threads N the copies run on N threads too, as the decode's kernels and transfers do.
            let dram = Copier(64 << 20, threads: threads)
            var resident: Copier?
            var copies = KernelBench.CopyTimes(memcpy: .infinity, streaming: .infinity), residentSeconds = Double.infinity
            func sampleCopies() {
                copies.memcpy = min(copies.memcpy, KernelBench.seconds(dram.copy))
                copies.streaming = min(copies.streaming, KernelBench.seconds(dram.streamingCopy))
                if let r = resident { residentSeconds = min(residentSeconds, KernelBench.seconds(r.copy, calls: 16), KernelBench.seconds(r.streamingCopy, calls: 16)) }
            }
            sampleCopies()
            var perToken: [Double] = []
            for t in 0..<tokens {
                progress.detail("token \(t + 1)/\(tokens)")
                let start = ContinuousClock.now
                _ = try generator.feed((t * 31 + 7) % 256, position: t)
                perToken.append((ContinuousClock.now - start) / .seconds(1))
                if t == 0 {
                    // One step's bytes, known after the first step.
                    let executor = generator.executor!
                    resident = Copier(max(executor.linkBytes.reduce(0, +) / executor.steps, 4096), threads: threads)
                }
                if t % 64 == 63 || t == tokens - 1 { sampleCopies() }
            }
            let executor = generator.executor!
            let bytesPerToken = executor.linkBytes.reduce(0, +) / executor.steps
            var interpreter = try Generator(try ReferenceInterpreter(program: program, weights: weights, kvLayouts: plan.kv?.layers))
            var interpreted: [Double] = []
            progress.stage("reference interpreter")
            for t in 0..<min(tokens, 32) {
                let start = ContinuousClock.now
                _ = try interpreter.feed((t * 31 + 7) % 256, position: t)
                interpreted.append((ContinuousClock.now - start) / .seconds(1))
            }
            let copy = copies.best / Double(64 << 20)  // seconds per byte
            // The same copy at one step's bytes: a small model's weights stay in the caches between steps.
            let residentCopy = residentSeconds / Double(max(bytesPerToken, 4096))
            progress.finish()
            let median = perToken.sorted()[perToken.count / 2], mean = perToken.reduce(0, +) / Double(perToken.count)
            let roofline = Double(bytesPerToken) * copy
            print("kvplan bench run \(directory) --tokens \(tokens) --threads \(threads) (\(KernelBench.date()))\n")
            print("\(KernelLibrary.hostDescription)\n")
            print("| measure | value |\n|---|---:|")
            print(String(format: "| generated schedule, median ms/token | %.3f |", 1000 * median))
            print(String(format: "| generated schedule, mean ms/token (tokens/s) | %.3f (%.0f) |", 1000 * mean, 1 / mean))
            print(String(format: "| reference interpreter, median ms/token (first %d tokens) | %.3f |", interpreted.count, 1000 * interpreted.sorted()[interpreted.count / 2]))
            print("| bytes moved per token (all links, counted) | \(bytesPerToken) |")
            print(String(format: "| copy bandwidth, 64 MiB: memcpy, streaming copy | %.2f, %.2f GB/s |", Double(64 << 20) / copies.memcpy / 1e9,
                         Double(64 << 20) / copies.streaming / 1e9))
            print(String(format: "| roofline ms/token (bytes ÷ the faster copy's bandwidth) | %.3f |", 1000 * roofline))
            print(String(format: "| fraction of the roofline (median) | %.0f%% |", 100 * roofline / median))
            print("| copy bandwidth at one step's bytes (\(KernelBench.size(bytesPerToken)), cache-resident when it fits) | " + String(format: "%.2f GB/s |", 1 / residentCopy / 1e9))
            print(String(format: "| fraction of that cache-resident roofline (median) | %.0f%% |", 100 * Double(bytesPerToken) * residentCopy / median))
            if let kv = plan.kv { print("| KV cache | \(kv.policy), \(kv.bytes) B over \(kv.layers.count) layers |") }
        } catch let error as RuntimeError {
            throw UserError("\(directory): \(error.message)")
        }
    }
}
