import Dispatch
import Foundation
import KVArtifact
import KVRuntime

// Next-byte loss of a byte-level model streamed through the reference interpreter, one run per
// set of KV layouts (nil: the full-precision f32 cache), runs spread over worker threads. Shared
// by `kvplan eval` (one run per budget × policy × precision) and `kvplan profile --sensitivity`
// (one run per layer with only that layer compressed).
//
// When the model has a `batch` dimension, a run streams all its windows in lockstep, one per
// sequence of the batched program: every op handles the sequences independently (each row's
// matmul sums in the same order, each sequence has its own packed cache and scores), so each
// window's losses are bit for bit those of a batch-1 run (LockstepBatchTests), while the matmul
// reads each weight row once per block of sequences and the per-op overhead is shared.

/// Bits per byte of runs over the same windows, in parallel.
enum StreamingLoss {
    /// One run's result: bits per byte, or why it failed.
    typealias Outcome = Result<Double, UserError>

    /// Streams every window through the interpreter once per entry of `runs` (nil: full precision)
    /// on `threads` workers; `done` hears each finished run (count so far) from a worker thread.
    /// With `lockstep` (the model with batch = the number of windows) each run streams all windows
    /// at once, one per sequence, and sums the same per-byte losses in the same order.
    static func bitsPerByte(program: ModelProgram, lockstep: ModelProgram? = nil, weights: [String: [Float]], runs: [[KVLayerLayout]?],
                            windows: [[UInt8]], threads: Int, done: @escaping @Sendable (Int) -> Void) -> [Outcome] {
        final class Results: @unchecked Sendable {
            let lock = NSLock()
            var outcomes: [Outcome?]
            var finished = 0
            init(_ n: Int) { outcomes = Array(repeating: nil, count: n) }
        }
        let lockstep = lockstep.flatMap { p in p.tensors.first { $0.name == "tokens" }?.elementCount == windows.count ? p : nil }
        let results = Results(runs.count)
        DispatchQueue.concurrentPerform(iterations: max(1, min(threads, runs.count))) { worker in
            var j = worker
            while j < runs.count {
                let outcome: Outcome
                do {
                    // Each prediction's loss, window by window: summed in this order either way.
                    let perWindow = try lockstep.map { try lockstepLosses(program: $0, weights: weights, layouts: runs[j], windows: windows) }
                        ?? windows.map { try Self.losses(program: program, weights: weights, layouts: runs[j], window: $0) }
                    var nll = 0.0, predictions = 0
                    for window in perWindow {
                        for loss in window { nll += loss }
                        predictions += window.count
                    }
                    outcome = .success(nll / Double(max(1, predictions)) / log(2))
                } catch {
                    outcome = .failure(UserError((error as? RuntimeError)?.message ?? "\(error)"))
                }
                results.lock.lock()
                results.outcomes[j] = outcome
                results.finished += 1
                let finished = results.finished
                results.lock.unlock()
                done(finished)
                j += max(1, min(threads, runs.count))
            }
        }
        return results.outcomes.map { $0! }
    }

    /// −ln p(next byte) of `logits` (one row of the vocabulary).
    private static func loss(_ logits: ArraySlice<Float>, next: UInt8) -> Double {
        let m = logits.max()!
        let logSum = Double(m) + log(logits.reduce(0.0) { $0 + exp(Double($1 - m)) })
        return logSum - Double(logits[logits.startIndex + Int(next)])
    }

    /// One window through a batch-1 program.
    private static func losses(program: ModelProgram, weights: [String: [Float]], layouts: [KVLayerLayout]?, window w: [UInt8]) throws -> [Double] {
        var generator = try Generator(try ReferenceInterpreter(program: program, weights: weights, kvLayouts: layouts))
        return try (0..<(w.count - 1)).map { p in loss(try generator.feed(Int(w[p]), position: p)[...], next: w[p + 1]) }
    }

    /// All windows (equal lengths) through a program whose batch is their number, one per sequence.
    private static func lockstepLosses(program: ModelProgram, weights: [String: [Float]], layouts: [KVLayerLayout]?,
                                       windows: [[UInt8]]) throws -> [[Double]] {
        var interpreter = try ReferenceInterpreter(program: program, weights: weights, kvLayouts: layouts)
        guard let tokens = program.tensors.firstIndex(where: { $0.name == "tokens" }),
              let logits = program.tensors.indices.last(where: { program.tensors[$0].kind == "output" }) else {
            throw RuntimeError("'\(program.model)' has no 'tokens' input or no output")
        }
        let positions = Generator.positionInput(of: program)
        let (count, length, vocabulary) = (windows.count, windows[0].count, program.tensors[logits].shape.last!)
        var out = Array(repeating: [Double](), count: count)
        for p in 0..<(length - 1) {
            try interpreter.setInput(tokens, windows.map { Float($0[p]) })
            if let positions { try interpreter.setInput(positions, Array(repeating: Float(p), count: count)) }
            try interpreter.step()
            let row = interpreter.values[logits]
            for b in 0..<count { out[b].append(loss(row[b * vocabulary..<(b + 1) * vocabulary], next: windows[b][p + 1])) }
        }
        return out
    }
}
