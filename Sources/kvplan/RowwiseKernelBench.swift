import Foundation
import KVArtifact
import KVCodegen
import KVRuntime

// `kvplan bench kernels`, part two: the row-wise and elementwise kernel families (rmsnorm,
// layernorm, softmax, rope, silu_mul, gelu, add, embed). Each is emitted for a one-op program of
// `rows` rows of 1024 channels, compiled and timed like the GEMV rows, and measured against a
// plain scalar Swift loop computing the same thing in Float, and against the copy bandwidth (the
// faster of memcpy and a streaming copy, CopyBandwidth.swift) moving the same traffic. These
// kernels read and write every byte once, so the measure is traffic: bytes read + bytes written
// per call; a copy's traffic is twice the bytes it copies. FLOP counts per element
// are the conventional ones, counting exp, erf, cos and sin as one each (listed in `flops`).

extension KernelBench {
    /// One row-wise family: its op, operand shapes and dtypes, and FLOPs per output element.
    struct RowwiseFamily {
        var name: String
        var kind: String
        var attributes: [String: ModelProgram.Attribute] = [:]
        /// Operands after x: ("row" = one per channel, "same" = like x, "positions" = one per row).
        var extra: [String] = []
        /// x's storage dtype (embed reads f16 rows and writes f32).
        var dtype = "f32"
        var flops: Double

        static let all: [RowwiseFamily] = [
            .init(name: "rmsnorm", kind: "rmsnorm", attributes: ["eps": .float(1e-5)], extra: ["row"], flops: 4),
            .init(name: "layernorm", kind: "layernorm", attributes: ["eps": .float(1e-5)], extra: ["row", "row"], flops: 8),
            .init(name: "softmax", kind: "softmax", flops: 5),
            .init(name: "rope (8 heads × 128)", kind: "rope", attributes: ["heads": .int(8), "theta": .float(10000)], extra: ["positions"], flops: 3),
            .init(name: "silu_mul", kind: "silu_mul", extra: ["same"], flops: 5),
            .init(name: "gelu (erf)", kind: "gelu", flops: 5),
            .init(name: "add", kind: "add", extra: ["same"], flops: 1),
            .init(name: "embed (f16 rows)", kind: "embed", extra: ["positions"], dtype: "f16", flops: 0),
        ]
    }

    /// The Markdown row of `family` over `rows` × 1024.
    func rowwise(_ family: RowwiseFamily, rows: Int, label: String) throws -> String {
        let width = 1024, n = rows * width
        var tensors = [ModelProgram.Tensor(name: "x", kind: family.dtype == "f32" ? "input" : "weight", dtype: family.dtype, shape: [rows, width])]
        var bytes = [family.dtype == "f16" ? 2 * n : 4 * n]
        for (i, e) in family.extra.enumerated() {
            let shape = e == "row" ? [width] : e == "same" ? [rows, width] : [rows]
            tensors.append(.init(name: "o\(i)", kind: "input", dtype: "f32", shape: shape))
            bytes.append(4 * shape.reduce(1, *))
        }
        tensors.append(.init(name: "y", kind: "output", dtype: "f32", shape: [rows, width]))
        bytes.append(4 * n)
        let op = ModelProgram.Op(name: "y", kind: family.kind, operands: Array(0..<tensors.count - 1), results: [tensors.count - 1], updates: [],
                                 attributes: family.attributes)
        let (program, schedule, offsets) = Self.oneOp(tensors, op, bytes: bytes)
        let (kernels, step) = try SwiftEmitter(program: program, schedule: schedule).emit()
        let library = try KernelLibrary(kernels: kernels, schedule: step)
        library.setThreads(threads)
        let arena = UnsafeMutableRawPointer.allocate(byteCount: schedule.arenas[0].bytes, alignment: 4096)
        defer { arena.deallocate() }
        let pointer = { (i: Int) in (arena + offsets[i]).assumingMemoryBound(to: Float.self) }
        for (i, tensor) in tensors.enumerated() {
            let count = tensor.shape.reduce(1, *)
            if tensor.dtype == "f16" {
                let h = (arena + offsets[i]).assumingMemoryBound(to: Float16.self)
                for j in 0..<count { h[j] = Float16(Float(j % 97) / 97 - 0.5) }
            } else if tensor.shape == [rows] {
                for j in 0..<count { pointer(i)[j] = Float(j % 1000) }  // positions and ids
            } else {
                for j in 0..<count { pointer(i)[j] = Float((j &* 7 &+ i) % 97) / 48 - 1 }
            }
        }
        let tiers = [arena], state = [arena]
        var links = [0]
        let generated = Self.time {
            tiers.withUnsafeBufferPointer { t in state.withUnsafeBufferPointer { s in library.step(t.baseAddress!, s.baseAddress!, &links, nil, nil) } }
        }
        let y = pointer(tensors.count - 1)
        let reference = Array(UnsafeBufferPointer(start: y, count: n))
        let x = UnsafeRawPointer(arena + offsets[0])
        let o = family.extra.indices.map { UnsafePointer(pointer($0 + 1)) }
        let scalar = Self.time { Self.scalarRowwise(family.kind, x: x, o: o, y: y, rows: rows, width: width) }
        let d = zip(reference, UnsafeBufferPointer(start: y, count: n)).map { abs($0 - $1) / max(1, abs($1)) }.max() ?? 0
        if d > 1e-3 { printError("warning: the scalar loop and the generated \(family.name) differ by \(d)\n") }
        let traffic = bytes.reduce(0, +)
        let copy = Self.copySeconds(traffic / 2, threads: threads)
        let gb = { (s: Double) in Double(traffic) / s / 1e9 }
        return "| \(family.name) (\(label)) | \(rows)×\(width) | \(Self.size(traffic)) | \(f2(gb(generated))) | "
            + "\(f2(family.flops * Double(n) / generated / 1e9)) | \(f2(gb(scalar))) | \(f2(gb(copy.memcpy))) | \(f2(gb(copy.streaming))) | \(f2(copy.best / generated)) | \(f2(scalar / generated)) |"
    }

    /// The plain loops the row-wise kernels are measured against: Float arithmetic, libm calls,
    /// one element at a time (what one would write first).
    static func scalarRowwise(_ kind: String, x raw: UnsafeRawPointer, o: [UnsafePointer<Float>], y: UnsafeMutablePointer<Float>,
                              rows: Int, width: Int) {
        let n = rows * width
        let x = raw.assumingMemoryBound(to: Float.self)
        switch kind {
        case "rmsnorm", "layernorm":
            for r in 0..<rows {
                let row = x + r * width, out = y + r * width
                var mean: Float = 0
                if kind == "layernorm" {
                    for i in 0..<width { mean += row[i] }
                    mean /= Float(width)
                }
                var squares: Float = 0
                for i in 0..<width { squares += (row[i] - mean) * (row[i] - mean) }
                let s = 1 / (squares / Float(width) + 1e-5).squareRoot()
                for i in 0..<width { out[i] = (row[i] - mean) * s * o[0][i] + (kind == "layernorm" ? o[1][i] : 0) }
            }
        case "softmax":
            for r in 0..<rows {
                let row = x + r * width, out = y + r * width
                var m = -Float.infinity
                for i in 0..<width { m = max(m, row[i]) }
                var s: Float = 0
                for i in 0..<width { out[i] = exp(row[i] - m); s += out[i] }
                for i in 0..<width { out[i] /= s }
            }
        case "rope":
            let heads = 8, d = width / heads
            for r in 0..<rows {
                let p = o[0][r]
                for i in 0..<d / 2 {
                    let angle = p * pow(10000, -Float(2 * i) / Float(d))
                    let c = cos(angle), s = sin(angle)
                    for h in 0..<heads {
                        let base = r * width + h * d
                        let x1 = x[base + i], x2 = x[base + i + d / 2]
                        y[base + i] = x1 * c - x2 * s
                        y[base + i + d / 2] = x2 * c + x1 * s
                    }
                }
            }
        case "silu_mul": for i in 0..<n { y[i] = x[i] / (1 + exp(-x[i])) * o[0][i] }
        case "gelu": for i in 0..<n { y[i] = 0.5 * x[i] * (1 + erf(x[i] * 0.70710678)) }
        case "add": for i in 0..<n { y[i] = x[i] + o[0][i] }
        case "embed":
            let h = raw.assumingMemoryBound(to: Float16.self)
            for i in 0..<n { y[i] = Float(h[i]) }
        default: fatalError("no scalar loop for \(kind)")
        }
    }
}
