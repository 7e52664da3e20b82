import Foundation
import KVArtifact

/// Generation with a decoder: prompt bytes in, sampled bytes out (a byte-level vocabulary), or
/// token ids in and out (any vocabulary).
///
/// The program's token-id input is the i32 input an `embed` reads; its position input is the
/// i32 input a `rope` reads or a second `embed` looks up (if any). The prompt is fed one token per decode step (the cache
/// fills as it would in serving), then `maxTokens` bytes are sampled: greedy at temperature 0,
/// else from softmax(logits / T) with a seeded generator.
public struct Generator {
    /// What runs the steps: the reference interpreter, or else a compiled schedule.
    public private(set) var interpreter: ReferenceInterpreter?
    public let executor: ScheduleExecutor?
    let program: ModelProgram
    /// Called with (token, position) before each step (e.g. to run a reference alongside).
    public var beforeStep: ((Int, Int) throws(RuntimeError) -> Void)?
    /// Called with each kernel action's index after it ran (compiled schedules only; OpCapture assembles ops).
    public var observe: ((Int) -> Void)?
    let tokenInput: Int
    let positionInput: Int?
    let logits: Int
    /// Entries of the logits (256 for a byte-level model).
    public let vocabulary: Int

    /// A generator over an interpreter whose program is a byte-level decoder with batch 1.
    public init(_ interpreter: ReferenceInterpreter) throws(RuntimeError) {
        try self.init(interpreter: interpreter, executor: nil, program: interpreter.program)
    }

    /// A generator over a compiled schedule of a byte-level decoder with batch 1.
    public init(_ executor: ScheduleExecutor) throws(RuntimeError) {
        try self.init(interpreter: nil, executor: executor, program: executor.program)
    }

    init(interpreter: ReferenceInterpreter?, executor: ScheduleExecutor?, program p: ModelProgram) throws(RuntimeError) {
        self.interpreter = interpreter
        self.executor = executor
        self.program = p
        guard let embed = p.ops.first(where: { $0.kind == "embed" }), embed.operands.count == 2,
              p.tensors[embed.operands[1]].kind == "input" else {
            throw RuntimeError("'\(p.model)' has no embed op reading an input of token ids, so it cannot generate text")
        }
        tokenInput = embed.operands[1]
        guard p.tensors[tokenInput].elementCount == 1 else {
            throw RuntimeError("generation runs one sequence; '\(p.tensors[tokenInput].name)' holds \(p.tensors[tokenInput].elementCount) tokens (compile with --batch 1)")
        }
        positionInput = Self.positionInput(of: p)
        guard let out = p.tensors.indices.last(where: { p.tensors[$0].kind == "output" }) else {
            throw RuntimeError("'\(p.model)' has no output tensor")
        }
        logits = out
        vocabulary = p.tensors[out].shape.last ?? 0
    }

    /// The input holding the token's position: the one a rope reads, or else the ids of a second
    /// embedding lookup (learned positions, GPT-2's `wpe`); nil when positions are not an input.
    public static func positionInput(of p: ModelProgram) -> Int? {
        if let rope = p.ops.first(where: { $0.kind == "rope" && $0.operands.count == 2 && p.tensors[$0.operands[1]].kind == "input" }) {
            return rope.operands[1]
        }
        let lookups = p.ops.filter { $0.kind == "embed" && $0.operands.count == 2 && p.tensors[$0.operands[1]].kind == "input" }.map { $0.operands[1] }
        return lookups.dropFirst().first { $0 != lookups.first }
    }

    /// Runs one token at `position`; returns the logits.
    public mutating func feed(_ token: Int, position: Int) throws(RuntimeError) -> [Float] {
        try beforeStep?(token, position)
        if let executor {
            try executor.setInput(program.tensors[tokenInput].name, [Float(token)])
            if let positionInput { try executor.setInput(program.tensors[positionInput].name, [Float(position)]) }
            try executor.step(observe: observe)
            return try finite(try executor.output(program.tensors[logits].name), position: position)
        }
        try interpreter!.setInput(tokenInput, [Float(token)])
        if let positionInput { try interpreter!.setInput(positionInput, [Float(position)]) }
        try interpreter!.step()
        return try finite(interpreter!.values[logits], position: position)
    }

    /// `logits`, or an error naming the first entry that is NaN or infinite (weights that are not
    /// finite, or activations that overflowed): nothing can be sampled from them.
    func finite(_ logits: [Float], position: Int) throws(RuntimeError) -> [Float] {
        guard let bad = logits.firstIndex(where: { !$0.isFinite }) else { return logits }
        throw RuntimeError("position \(position): logit \(bad) of '\(program.tensors[self.logits].name)' is \(logits[bad]); "
                           + "the weights or the activations are not finite")
    }

    /// The prompt's bytes followed by `maxTokens` sampled bytes (calls `emit` with each new byte);
    /// a byte-level model only.
    public mutating func generate(prompt: [UInt8], maxTokens: Int, temperature: Double, seed: UInt64,
                                  emit: (UInt8) -> Void = { _ in }) throws(RuntimeError) -> [UInt8] {
        guard vocabulary == 256 else {
            throw RuntimeError("the byte tokenizer needs a vocabulary of 256; '\(program.tensors[logits].name)' has \(vocabulary) (give token ids instead)")
        }
        return try generate(tokens: prompt.isEmpty ? [10] : prompt.map(Int.init), maxTokens: maxTokens, temperature: temperature, seed: seed) {
            emit(UInt8($0))
        }.map { UInt8($0) }
    }

    /// The prompt's token ids followed by `maxTokens` sampled ids (calls `emit` with each new one).
    public mutating func generate(tokens prompt: [Int], maxTokens: Int, temperature: Double, seed: UInt64,
                                  emit: (Int) -> Void = { _ in }) throws(RuntimeError) -> [Int] {
        guard !prompt.isEmpty else { throw RuntimeError("the prompt has no tokens") }
        if let bad = prompt.first(where: { !(0..<vocabulary).contains($0) }) {
            throw RuntimeError("token id \(bad) is outside the vocabulary of \(vocabulary)")
        }
        var rng = seed ^ 0x5DEE_CE66_D1CE_4E5B
        var position = 0
        var last: [Float] = []
        for token in prompt {
            last = try feed(token, position: position)
            position += 1
        }
        var out: [Int] = []
        for _ in 0..<maxTokens {
            let next = Self.sample(last, temperature: temperature, state: &rng)
            out.append(next)
            emit(next)
            last = try feed(next, position: position)
            position += 1
        }
        return out
    }

    /// Greedy (temperature 0) or softmax sampling with a SplitMix64 state.
    public static func sample(_ logits: [Float], temperature: Double, state: inout UInt64) -> Int {
        guard temperature > 0 else { return logits.indices.max { logits[$0] < logits[$1] } ?? 0 }
        let m = logits.max() ?? 0
        let weights = logits.map { exp(Double($0 - m) / temperature) }
        var u = Double(splitMix64(&state) >> 11) / Double(1 << 53) * weights.reduce(0, +)
        for (i, w) in weights.enumerated() {
            u -= w
            if u < 0 { return i }
        }
        return weights.count - 1
    }
}
