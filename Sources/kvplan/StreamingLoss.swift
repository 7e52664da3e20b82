import Dispatch
import Foundation
import KVArtifact
import KVRuntime

// Next-byte loss of a byte-level model streamed through the reference interpreter, one run per
// set of KV layouts (nil: the full-precision f32 cache), runs spread over worker threads. Shared
// by `kvplan eval` (one run per budget × policy × precision) and `kvplan profile --sensitivity`
// (one run per layer with only that layer compressed).

/// Bits per byte of runs over the same windows, in parallel.
enum StreamingLoss {
    /// One run's result: bits per byte, or why it failed.
    typealias Outcome = Result<Double, UserError>

    /// Streams every window through the interpreter once per entry of `runs` (nil: full precision)
    /// on `threads` workers; `done` hears each finished run (count so far) from a worker thread.
    static func bitsPerByte(program: ModelProgram, weights: [String: [Float]], runs: [[KVLayerLayout]?], windows: [[UInt8]],
                            threads: Int, done: @escaping @Sendable (Int) -> Void) -> [Outcome] {
        final class Results: @unchecked Sendable {
            let lock = NSLock()
            var outcomes: [Outcome?]
            var finished = 0
            init(_ n: Int) { outcomes = Array(repeating: nil, count: n) }
        }
        let results = Results(runs.count)
        DispatchQueue.concurrentPerform(iterations: max(1, min(threads, runs.count))) { worker in
            var j = worker
            while j < runs.count {
                var nll = 0.0, predictions = 0
                var outcome: Outcome
                do {
                    for w in windows {
                        var generator = try Generator(try ReferenceInterpreter(program: program, weights: weights, kvLayouts: runs[j]))
                        for p in 0..<(w.count - 1) {
                            let logits = try generator.feed(Int(w[p]), position: p)
                            let m = logits.max()!
                            let logSum = Double(m) + log(logits.reduce(0.0) { $0 + exp(Double($1 - m)) })
                            nll += logSum - Double(logits[Int(w[p + 1])])
                            predictions += 1
                        }
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
}
